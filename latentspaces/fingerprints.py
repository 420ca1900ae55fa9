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
- `digest(*parts)`: anything else, as a sequence of tensors (their bytes) and strings (UTF-8): an
  inversion checkpoint's targets, start codes and settings; a set of edit directions.
"""

from __future__ import annotations

import hashlib
import os
from typing import List, Mapping, Optional, Union

import torch

from .images import to_uint8

SHORT = 16   # hex digits kept in the fingerprints recorded beside results


def digest(*parts: Union[torch.Tensor, str, bytes], length: Optional[int] = None) -> str:
    """sha256 over `parts` in order: a tensor contributes its bytes (C order, as stored), a string its UTF-8
    encoding. The hex digest, cut to `length` digits when given."""
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


def file_fingerprint(path: Union[str, os.PathLike]) -> str:
    """The first 16 hex digits of the sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:SHORT]


__all__ = ["SHORT", "digest", "file_fingerprint", "generator_fingerprint", "image_fingerprints", "mapping_fingerprint"]
