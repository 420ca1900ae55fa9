"""A whole NVlabs Generator module saved with torch.save, as PTI saves its tuned generator, read without running it.

PTI ("Pivotal Tuning for Latent-based Editing of Real Images") ends with ``torch.save(G)``: a torch zip archive
whose ``data.pkl`` pickles the Generator module itself (the persistent-class records of an NVlabs ``.pkl``, at
protocol 2) and whose tensors are persistent ids ``('storage', torch.FloatStorage, key, location, numel)``
naming the records ``<name>/data/<key>``. `load_nvlabs_module_archive` reads it with the NVlabs allow-list
(`nvlabs_pickle`) plus the storage class names, which stand for their dtype only; each record's bytes become a
storage of exactly ``numel`` elements. Run `latentspaces.torch_files.check_torch_archive` first (record sizes,
no compression, CRC-32s).
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

import torch

from ..errors import CheckpointError
from .nvlabs_pickle import _NOTHING_RAN, PathLike, _BoundedReader, _is_int, _RestrictedUnpickler
from .nvlabs_records import CorruptPickleError, PersistentRecord, UnsafePickleError

# torch.save names each storage's type by its legacy class; the dtype is all that is taken from it.
_STORAGE_DTYPES = {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool}
_RECORD_MARK = b"torch_utils.persistence"


class _StorageType:
    """What a storage class name in the stream stands for: its dtype, nothing callable."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _ArchiveUnpickler(_RestrictedUnpickler):
    """The NVlabs allow-list, plus torch.save's persistent storages read from the archive's records."""

    def __init__(self, reader: _BoundedReader, path: str, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(reader, path)
        self._archive, self._prefix, self._storages = archive, prefix, {}
        for name, dtype in _STORAGE_DTYPES.items():
            self._allowed[("torch", name)] = _StorageType(dtype)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and pid[2].isdigit() and len(pid[2]) < 12 and isinstance(pid[3], str)
                and _is_int(pid[4]) and pid[4] >= 0):
            raise UnsafePickleError(f"{self._path}: a persistent id {str(pid)[:80]} is not torch.save's "
                                    f"('storage', type, key, location, numel); {_NOTHING_RAN}")
        key, dtype, numel = pid[2], pid[1].dtype, pid[4]
        if key not in self._storages:
            name = f"{self._prefix}/data/{key}"
            try:
                info = self._archive.getinfo(name)
            except KeyError:
                raise CorruptPickleError(f"{self._path}: the archive has no record {name!r} for a tensor") from None
            size = numel * torch.empty((), dtype=dtype).element_size()
            if info.file_size != size:
                raise CorruptPickleError(f"{self._path}: record {name!r} holds {info.file_size} bytes; its tensor "
                                         f"declares {numel} {str(dtype).replace('torch.', '')} values ({size} bytes)")
            data = bytearray(self._archive.read(name))
            untyped = torch.frombuffer(data, dtype=torch.uint8).untyped_storage() if size else torch.UntypedStorage(0)
            self._storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        storage = self._storages[key]
        if storage.dtype != dtype:
            raise UnsafePickleError(f"{self._path}: storage {key} is used as two dtypes; {_NOTHING_RAN}")
        return storage


def _pickle_record(archive: zipfile.ZipFile, path: str) -> str:
    """The name of the archive's one `<prefix>/data.pkl` record (CorruptPickleError otherwise)."""
    names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(names) != 1:
        raise CorruptPickleError(f"{path}: a zip archive without one '<name>/data.pkl' record: not a torch.save file")
    return names[0]


def is_nvlabs_module_archive(path: PathLike) -> bool:
    """True for a torch.save zip archive whose pickle opens with NVlabs' persistent-class call (PTI's saved G)."""
    try:
        with zipfile.ZipFile(os.fspath(path)) as archive:
            with archive.open(_pickle_record(archive, os.fspath(path))) as f:
                return _RECORD_MARK in f.read(256)
    except (zipfile.BadZipFile, OSError, ValueError, CheckpointError):
        return False


def load_nvlabs_module_archive(path: PathLike) -> dict:
    """{'G_ema': record} of a whole NVlabs Generator saved with torch.save (PTI's tuned generator), read without
    executing anything; run `latentspaces.torch_files.check_torch_archive` on the file first."""
    path_str = os.fsdecode(os.fspath(path))
    with zipfile.ZipFile(path_str) as archive:
        name = _pickle_record(archive, path_str)
        data = archive.read(name)
        unpickler = _ArchiveUnpickler(_BoundedReader(io.BufferedReader(io.BytesIO(data)), len(data)), path_str,
                                      archive, name.rsplit("/", 1)[0])
        try:
            result = unpickler.load()
        except (UnsafePickleError, CheckpointError):
            raise
        except EOFError:
            raise CorruptPickleError(f"{path_str}: {name} is truncated") from None
        except Exception as e:
            raise CorruptPickleError(f"{path_str}: {name} is not a valid pickle stream ({type(e).__name__}: "
                                     f"{str(e)[:80]})") from None
        finally:
            unpickler.memo.clear()
    if not isinstance(result, PersistentRecord) or result.class_name != "Generator":
        what = result.class_name if isinstance(result, PersistentRecord) else type(result).__name__
        raise UnsafePickleError(f"{path_str}: the archive holds a {what}, not an NVlabs Generator module (PTI saves "
                                f"its tuned G so); {_NOTHING_RAN}")
    for _ in result.walk("G"):
        pass
    return {"G_ema": result}


__all__ = ["is_nvlabs_module_archive", "load_nvlabs_module_archive"]
