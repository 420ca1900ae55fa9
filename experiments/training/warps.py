"""Random geometric warps for training alignment modules (HFGI's ADA alignment loss).

`random_perspective` draws the corner offsets of torchvision's `RandomPerspective` (each corner moves
inwards by up to distortion * side / 2) from a seeded generator, one warp per sample, and applies them
with `torchvision.transforms.v2.functional.perspective` (bilinear, zero fill).
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torchvision.transforms.v2 import functional as TF


def perspective_corners(height: int, width: int, distortion: float,
                        generator: Optional[torch.Generator] = None) -> List[List[List[int]]]:
    """(startpoints, endpoints) of one random perspective warp, corners top-left, top-right, bottom-right,
    bottom-left as [x, y] pixels; distortion in [0, 1]."""
    if not 0.0 <= distortion <= 1.0:
        raise ValueError(f"distortion must be in [0, 1], got {distortion}")
    dw, dh = int(distortion * width / 2), int(distortion * height / 2)

    def draw(high: int) -> int:
        return int(torch.randint(0, high + 1, (), generator=generator))

    end = [[draw(dw), draw(dh)], [width - 1 - draw(dw), draw(dh)],
           [width - 1 - draw(dw), height - 1 - draw(dh)], [draw(dw), height - 1 - draw(dh)]]
    start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    return [start, end]


def random_perspective(x: torch.Tensor, distortion: float = 0.15, p: float = 0.9,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Warp each sample of x [N, C, H, W] by its own random perspective with probability p (else keep it).

    The generator (CPU) decides which samples are warped and how; the same seed gives the same warps.
    """
    if x.ndim != 4:
        raise ValueError(f"random_perspective takes [N, C, H, W], got {list(x.shape)}")
    out = []
    for sample in x:
        if float(torch.rand((), generator=generator)) < p:
            start, end = perspective_corners(x.shape[-2], x.shape[-1], distortion, generator)
            sample = TF.perspective(sample, start, end, interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)
        out.append(sample)
    return torch.stack(out)
