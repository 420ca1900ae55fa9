"""Fingerprints: short digests that say whether two things are the same, recorded beside results.

`generator_fingerprint(G)` identifies a generator by its weights (not by its file name or format): the
same weights loaded from a .pkl, a .pt or a .safetensors file give the same fingerprint. Code files
record it (`Code.save(..., generator_fingerprint=...)`), and `CodeFile.check_generator` refuses codes
edited or rendered with another generator.
"""

from __future__ import annotations

import hashlib

import torch


def generator_fingerprint(G: torch.nn.Module) -> str:
    """The first 16 hex digits of the sha256 over G's parameters and buffers (names and float32 values)."""
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


__all__ = ["generator_fingerprint"]
