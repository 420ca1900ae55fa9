"""The one pair of conversions between images in [-1, 1] and uint8 pixels, at the bottom of the library.

`latentspaces.images` (files), `latentspaces.fingerprints` (image fingerprints) and everything above use
these; they import nothing of the library, so any module may.
"""

from __future__ import annotations

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (any shape) -> uint8 in [0, 255] on the CPU: clamp, scale by 127.5, round."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous()


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1] (x / 127.5 - 1), on the device of `x`."""
    if x.dtype != torch.uint8:
        raise TypeError(f"from_uint8 expects a uint8 tensor, got {x.dtype}")
    return x.float() / 127.5 - 1


__all__ = ["from_uint8", "to_uint8"]
