"""Reading the torch.save files users bring: rosinality and e4e checkpoints, GANSpace and InterFaceGAN directions.

`load_torch_file(path, what)` is the one door for them. Nothing in the file is executed
(``torch.load(weights_only=True)``, mapped to the CPU), and nothing is inflated or materialised before
it is sized:

- the archive first (`check_torch_archive`): ``torch.save`` writes its zip records uncompressed, so a
  compressed record (a 3 MB file whose record inflates to 3 GB) is refused unread, and the records'
  declared sizes must fit `max_bytes`; then every record must match its stored CRC-32 (`check_record_crcs`:
  torch.load itself does not check, and a damaged tensor would load as changed weights);
- then every tensor in what was read (`check_loaded_tensors`), before any caller computes with it:
  dense and strided (no sparse or meta tensor), and backed by its own stored data: a 2 KB file can
  hold a stride-0 view of shape [2^20, 2^13] that ``.float()`` or ``.contiguous()`` would expand to
  34 GB. Containers are walked once per object within a node budget.

Every failure is a `CheckpointError` naming the file, on one line.
"""

from __future__ import annotations

import argparse
import os
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
MAX_OBJECTS = 100_000   # containers and tensors in one file (a 1024 px rosinality checkpoint holds about 1,200)
MAX_DEPTH = 32          # nesting of containers (rosinality: 2, e4e: 3)


def check_torch_archive(path: str, what: str, max_bytes: int = MAX_ARCHIVE_BYTES) -> None:
    """CheckpointError unless a torch.save zip archive's records are stored uncompressed and fit `max_bytes`.

    Files in torch's legacy (non-zip) format are left to torch, which reads them sequentially.
    """
    try:
        if not zipfile.is_zipfile(path):   # (it can raise itself on a damaged end record)
            return
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


__all__ = ["MAX_ARCHIVE_BYTES", "check_loaded_tensors", "check_record_crcs", "check_torch_archive", "load_torch_file"]
