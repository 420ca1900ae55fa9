"""Fingerprints: short digests that say whether two things are the same, recorded beside results.

Every digest of the project is a sha256 made here (results written before this module keep matching:
each function hashes exactly what its predecessor did):

- `generator_fingerprint(G)`: a generator by its weights (names and float32 values), not by its file
  name or format: the same weights from a .pkl, a .pt or a .safetensors file give the same fingerprint.
  Code files record it and `CodeFile.check_generator` refuses codes made with another generator.
- `mapping_fingerprint(G)`: the mapping network alone (names, shapes, stored bytes): the key of every
  statistic of the mapping (P_N, the mean z), cached beside the generator.
- `image_fingerprints(images)`: each image by its uint8 pixels (targets of a run folder).
- `file_fingerprint(path)`: a file by its bytes (the code or image file a row was computed from).
- `file_sha256(path)` / `check_sha256(path, expected, what, remedy)`: a file's full sha256 and the integrity
  check of the shipped assets (digests recorded in `latentspaces.assets`); `check_sidecar(path)`: the same
  for a user's file that carries a `<file>.sha256` beside it (the `sha256sum` format), when it does.
- `digest(*parts)`: anything else, as a sequence of tensors (their bytes) and strings (UTF-8): an
  inversion checkpoint's targets, start codes and settings; a set of edit directions.
"""

from __future__ import annotations

import hashlib
import os
from typing import List, Mapping, Optional, Union

import torch

from .errors import CheckpointError
from .pixels import to_uint8

SHORT = 16   # hex digits kept in the fingerprints recorded beside results


def digest(*parts: Union[torch.Tensor, str, bytes, memoryview], length: Optional[int] = None) -> str:
    """sha256 over `parts` in order: a tensor contributes its bytes (C order, as stored), a string its UTF-8
    encoding, bytes or a memoryview themselves (not copied). The hex digest, cut to `length` digits when given."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(part.detach().cpu().numpy().tobytes())
        elif isinstance(part, str):
            h.update(part.encode())
        else:
            h.update(part)
    return h.hexdigest() if length is None else h.hexdigest()[:length]


def _state_digest(state: Mapping[str, torch.Tensor], as_float32: bool, with_shapes: bool) -> str:
    parts: List[Union[str, torch.Tensor]] = []
    for name, t in sorted(state.items()):
        parts.append(name)
        if with_shapes:
            parts.append(str(tuple(t.shape)))
        parts.append((t.detach().float() if as_float32 else t.detach()).contiguous())
    return digest(*parts, length=SHORT)


def generator_fingerprint(G: torch.nn.Module) -> str:
    """The first 16 hex digits of the sha256 over G's parameters and buffers (names and float32 values)."""
    return _state_digest(G.state_dict(), as_float32=True, with_shapes=False)


def mapping_fingerprint(G: torch.nn.Module) -> str:
    """The first 16 hex digits of the sha256 over G.mapping's tensors (names, shapes, stored bytes)."""
    return _state_digest(G.mapping.state_dict(), as_float32=False, with_shapes=True)


def image_fingerprints(images: torch.Tensor) -> List[str]:
    """Per image [3, R, R] of images [N, 3, R, R] in [-1, 1]: the first 16 hex digits of the sha256 of its
    uint8 pixels (so an image re-read from a PNG keeps its fingerprint)."""
    return [digest(t, length=SHORT) for t in to_uint8(images)]


_VERIFIED: set = set()   # (path, inode, size, mtime_ns, digest) of files `check_sha256` already checked


def file_sha256(path: Union[str, os.PathLike], offset: int = 0) -> str:
    """The full sha256 hex digest of a file's bytes from `offset` on (read in 1 MiB blocks, every call)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: Union[str, os.PathLike], expected: str, what: str, remedy: str) -> None:
    """CheckpointError naming `what` and the file unless its sha256 is `expected` (a hex digest). A file that
    passed once is not read again in this process while its inode, size and mtime stay the same (the shipped
    assets are checked on every load by name)."""
    expected = expected.strip().lower()
    stat = os.stat(path)
    key = (os.path.abspath(os.fspath(path)), stat.st_ino, stat.st_size, stat.st_mtime_ns, expected)
    if key in _VERIFIED:
        return
    found = file_sha256(path)
    if found != expected:
        raise CheckpointError(f"{os.fspath(path)}: {what} does not match its recorded sha256 (expected "
                              f"{expected[:16]}..., the file has {found[:16]}...): the file was changed or damaged; "
                              f"{remedy}")
    _VERIFIED.add(key)


def check_sidecar(path: Union[str, os.PathLike]) -> None:
    """When `<path>.sha256` exists (as `sha256sum FILE > FILE.sha256` writes it), CheckpointError unless the
    file matches it; a file without one is not checked."""
    sidecar = f"{os.fspath(path)}.sha256"
    if not os.path.isfile(sidecar):
        return
    with open(sidecar, "rb") as f:
        words = f.read(4096).decode("ascii", errors="replace").split()
    if not words or len(words[0]) != 64 or any(c not in "0123456789abcdefABCDEF" for c in words[0]):
        raise CheckpointError(f"{sidecar}: not a sha256 file (expected 64 hex digits, as sha256sum writes)")
    check_sha256(path, words[0], "the file", f"its checksum file {os.path.basename(sidecar)} says otherwise; "
                 "re-download or re-copy it")


def file_fingerprint(path: Union[str, os.PathLike]) -> str:
    """The first 16 hex digits of the sha256 of a file's bytes (`file_sha256`)."""
    return file_sha256(path)[:SHORT]


__all__ = ["SHORT", "check_sha256", "check_sidecar", "digest", "file_fingerprint", "file_sha256", "generator_fingerprint", "image_fingerprints", "mapping_fingerprint"]
