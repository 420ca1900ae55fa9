"""Reading the torch.save files users bring: rosinality and e4e checkpoints, GANSpace and InterFaceGAN directions.

`load_torch_file(path, what)` is the one door for them. Nothing in the file is executed
(``torch.load(weights_only=True)``, mapped to the CPU), and nothing is inflated or materialised before
it is sized:

- the archive first (`check_torch_archive`): ``torch.save`` writes its zip records uncompressed, so a
  compressed record (a 3 MB file whose record inflates to 3 GB) is refused unread, and the records'
  declared sizes must fit `max_bytes`; then every record must match its stored CRC-32 (`check_record_crcs`:
  torch.load itself does not check, and a damaged tensor would load as changed weights); a file in torch's
  legacy (non-zip) format has its object stream scanned without building anything (`legacy_declared_bytes`):
  torch allocates each storage at the size its reference declares before it reads the data, so one flipped
  byte could ask for terabytes, and the declared sizes must fit the file;
- then every tensor in what was read (`check_loaded_tensors`), before any caller computes with it:
  dense and strided (no sparse or meta tensor), and backed by its own stored data: a 2 KB file can
  hold a stride-0 view of shape [2^20, 2^13] that ``.float()`` or ``.contiguous()`` would expand to
  34 GB. Containers are walked once per object within a node budget.

Every failure is a `CheckpointError` naming the file, on one line.
"""

from __future__ import annotations

import argparse
import os
import pickle
import warnings
import zipfile
from typing import Any, Iterable, Optional, Union

import torch

from .errors import CheckpointError
from .file_rules import backed_by_storage, shape_text

PathLike = Union[str, "os.PathLike[str]"]

# Declared bytes of all records of one archive: 16x the float32 weights of config-f at 1024 px (with its
# discriminator and optimizer state a full rosinality training checkpoint is about 1.3 GB).
MAX_ARCHIVE_BYTES = 2 * 2**30
# torch.save's legacy (non-zip) format starts with its pickled magic number 0x1950a86a20f9469cfc6c.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
MAX_OBJECTS = 100_000   # containers and tensors in one file (a 1024 px rosinality checkpoint holds about 1,200)
MAX_DEPTH = 32          # nesting of containers (rosinality: 2, e4e: 3)


class _Inert:
    """What the legacy scan builds for every name and call in the stream: it records nothing, runs nothing, and
    takes whatever a pickle opcode does to an object (calls, items, appends, state)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Inert":
        return _Inert()

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _LegacyScan(pickle.Unpickler):
    """Walks a legacy torch.save stream's pickles: every global is an inert stand-in (never imported), every
    storage reference ('storage', type, key, location, numel, view) is recorded as its declared bytes."""

    def __init__(self, f: Any) -> None:
        super().__init__(f)
        self.declared: dict = {}   # storage key -> bytes

    def find_class(self, module: str, name: str) -> Any:
        stand_in = _Inert()
        stand_in.name = name   # a storage class's name carries its dtype ('FloatStorage')
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage"):
            kind, numel = getattr(pid[1], "name", ""), pid[4]
            size = _LEGACY_ELEMENT_BYTES.get(kind, 8)   # unknown kinds count as 8 bytes per element
            if isinstance(numel, int) and numel >= 0:
                self.declared[str(pid[2])] = numel * size
            else:
                self.declared[str(pid[2])] = float("inf")
        return _Inert()


_LEGACY_ELEMENT_BYTES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
                         "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1,
                         "BoolStorage": 1, "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16}


class _BoundedFile:
    """A file's reads capped by what is left in it: a length field of 2^60 cannot make the scan allocate it."""

    def __init__(self, f: Any, size: int) -> None:
        self._f, self._left = f, size

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(self._left if n < 0 else min(n, self._left))
        self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        data = self._f.readline(self._left)
        self._left -= len(data)
        return data


def legacy_declared_bytes(path: str) -> int:
    """The tensor bytes a legacy (non-zip) torch.save stream's object declares, scanned without building or
    importing anything: its four leading pickles (magic number, protocol, system info, the object)."""
    with open(path, "rb") as f:
        scan = _LegacyScan(_BoundedFile(f, os.path.getsize(path)))
        for _ in range(4):
            scan.load()
    total = sum(scan.declared.values())
    return int(min(total, 2**62))


def check_torch_archive(path: str, what: str, max_bytes: int = MAX_ARCHIVE_BYTES) -> None:
    """CheckpointError unless a torch.save zip archive's records are stored uncompressed and fit `max_bytes`, or
    unless a legacy stream's declared tensors fit the file and `max_bytes` (`legacy_declared_bytes`)."""
    try:
        legacy = not zipfile.is_zipfile(path)   # (it can raise itself on a damaged end record)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: a damaged zip archive, not a readable {what} ({e})") from None
    if legacy:
        _check_legacy_sizes(path, what, max_bytes)
        return
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: a damaged zip archive, not a readable {what} ({e})") from None
    total = 0
    for info in records:
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path}: record {info.filename!r} is compressed ({info.compress_size} bytes "
                                  f"inflating to {info.file_size}); torch.save stores records uncompressed, so this "
                                  f"is not a {what} as torch wrote it. Nothing was inflated")
        total += info.file_size
    if total > max_bytes:
        raise CheckpointError(f"{path}: its records declare {total / 2**30:.1f} GiB, over the {max_bytes / 2**30:.1f} "
                              f"GiB a {what} may hold")
    check_record_crcs(path, what)


def _check_legacy_sizes(path: str, what: str, max_bytes: int) -> None:
    """Refuse a legacy torch.save stream whose storages declare more bytes than the file holds or than `max_bytes`,
    or whose object stream the scan cannot walk (a damaged length field would make torch's reader allocate it);
    a file that does not start as a legacy stream is left to torch.load, whose refusal names the file."""
    with open(path, "rb") as f:
        if f.read(len(LEGACY_MAGIC)) != LEGACY_MAGIC:
            return
    try:
        declared = legacy_declared_bytes(path)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: a legacy torch.save stream whose objects cannot be read ({type(e).__name__}: "
                              f"{str(e)[:80]}): truncated or damaged, not a readable {what}. Nothing was allocated") from None
    size = os.path.getsize(path)
    if declared > min(size, max_bytes):
        raise CheckpointError(f"{path}: its tensors declare {declared / 2**20:.1f} MiB, but the file holds "
                              f"{size / 2**20:.1f} MiB{' and a ' + what + f' may hold {max_bytes / 2**30:.1f} GiB' if declared > max_bytes else ''}: "
                              "a damaged size field. Nothing was allocated")


def check_record_crcs(path: str, what: str) -> None:
    """CheckpointError unless every record of a zip archive matches the CRC-32 stored with it: torch.load does not
    look, so a flipped byte in a tensor would load as a changed weight. Reads each record once, in 16 MiB pieces."""
    name = "?"
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                with archive.open(info) as record:
                    while record.read(1 << 24):
                        pass
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: record {name!r} fails its CRC-32 check or cannot be read ({e}); the file "
                              f"was damaged after torch wrote it, so it is not a {what} to trust") from None


def check_loaded_tensors(obj: Any, path: str, what: str) -> None:
    """CheckpointError unless every tensor in `obj` (dicts, lists, tuples, Namespaces) is dense, strided and
    backed by its own stored data; each object is visited once, within `MAX_OBJECTS` and `MAX_DEPTH`."""
    seen = set()
    stack = [(obj, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if len(seen) > MAX_OBJECTS:
            raise CheckpointError(f"{path}: holds more than {MAX_OBJECTS:,} objects; not a {what}")
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{path}: nested more than {MAX_DEPTH} levels deep; not a {what}")
        if isinstance(value, torch.Tensor):
            name = where or "the tensor"
            if value.is_meta or value.layout != torch.strided:
                raise CheckpointError(f"{path}: {name} is a {'meta' if value.is_meta else value.layout} tensor; a "
                                      f"{what} stores dense tensors with their data")
            if value.numel() and not backed_by_storage(value):
                raise CheckpointError(f"{path}: {name} is a view of shape {shape_text(value.shape)} over "
                                      f"{value.untyped_storage().nbytes()} stored bytes (stride 0 or overlapping); a "
                                      f"{what} stores every value. Refusing to expand it")
            continue
        children: Iterable = ()
        if isinstance(value, dict):
            children = ((f"{where}[{k!r}]" if where else repr(k), v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            children = ((f"{where}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, argparse.Namespace):
            children = ((f"{where}.{k}", v) for k, v in vars(value).items())
        stack.extend((v, w[:120], depth + 1) for w, v in children)


def load_torch_file(path: PathLike, what: str, allowed_globals: Iterable[type] = (),
                    max_bytes: int = MAX_ARCHIVE_BYTES, hint: Optional[str] = None) -> Any:
    """What a torch.save file holds, read weights-only onto the CPU, sized before anything is inflated
    and its tensors checked before anything is computed with them (module docstring).

    what: the kind of file expected, for messages ('rosinality checkpoint', 'direction file', ...).
    allowed_globals: classes torch's weights-only loader may rebuild besides tensors and plain containers
        (rosinality checkpoints store an argparse.Namespace).
    hint: appended to the message when torch cannot read the file (what such files normally hold).
    """
    path = os.fsdecode(os.fspath(path))
    check_torch_archive(path, what, max_bytes)
    try:
        with torch.serialization.safe_globals(list(allowed_globals)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Validating sparse tensor")  # refused below in any case
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # torch raises several types for hostile or broken files
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: refused as a {what} by torch.load(weights_only=True), the weights-only "
                              f"loader ({type(e).__name__}: {first[:80]}). Nothing from it was executed. "
                              f"{hint or 'The file may be truncated, corrupt or hold objects other than tensors.'}") from None
    check_loaded_tensors(obj, path, what)
    return obj


__all__ = ["LEGACY_MAGIC", "MAX_ARCHIVE_BYTES", "check_loaded_tensors", "legacy_declared_bytes", "check_record_crcs", "check_torch_archive", "load_torch_file"]
