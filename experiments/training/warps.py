"""Perspective warps for training alignment modules: one warp, two ways to draw it.

`perspective_warp(x, h)` samples x [N, C, H, W] at h(p) for every output position p, with h [N, 3, 3]
a homography in normalized coordinates (p in [-1, 1]^2 at pixel centers, x to the right, y down;
bilinear, zeros outside: `grid_sample` with align_corners=False). The draws:

- `random_perspective`: torchvision's `RandomPerspective` (what HFGI's released training uses for its
  ADA alignment loss): each corner moves inwards by up to distortion * side / 2, one warp per sample
  with probability p. `corner_homography` turns torchvision's corner pairs into our h, so the warp
  equals `torchvision.transforms.v2.functional.perspective(..., fill=None)` (tested).
- `random_homographies`: homographies near the identity (GradStyle's warped residuals, our choice):
  affine entries perturbed by U(-strength, strength), perspective entries by U(-strength/2, strength/2).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F

Corners = Sequence[Sequence[float]]  # 4 points [x, y] in pixels: top-left, top-right, bottom-right, bottom-left


def perspective_warp(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] sampled at h(p) for each output position p in [-1, 1]^2 (bilinear, zeros outside);
    h [N, 3, 3] or [3, 3] maps output to input positions, normalized coordinates."""
    if x.ndim != 4:
        raise ValueError(f"perspective_warp takes [N, C, H, W], got {list(x.shape)}")
    n, _, hh, ww = x.shape
    h = h.expand(n, 3, 3) if h.ndim == 2 else h
    if tuple(h.shape) != (n, 3, 3):
        raise ValueError(f"homographies must be [{n}, 3, 3] or [3, 3], got {list(h.shape)}")
    ys = (torch.arange(hh, device=x.device, dtype=x.dtype) + 0.5) / hh * 2 - 1
    xs = (torch.arange(ww, device=x.device, dtype=x.dtype) + 0.5) / ww * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    p = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)          # [1, HW, 3]
    q = p @ h.to(x.device, x.dtype).transpose(1, 2)                               # [N, HW, 3]
    grid = (q[..., :2] / q[..., 2:].clamp_min(1e-3)).reshape(n, hh, ww, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------------------------- torchvision's draw
def perspective_corners(height: int, width: int, distortion: float,
                        generator: Optional[torch.Generator] = None) -> List[List[List[int]]]:
    """(startpoints, endpoints) of one random perspective warp as torchvision's `RandomPerspective` draws
    them: corners top-left, top-right, bottom-right, bottom-left as [x, y] pixels; distortion in [0, 1]."""
    if not 0.0 <= distortion <= 1.0:
        raise ValueError(f"distortion must be in [0, 1], got {distortion}")
    dw, dh = int(distortion * width / 2), int(distortion * height / 2)

    def draw(high: int) -> int:
        return int(torch.randint(0, high + 1, (), generator=generator))

    end = [[draw(dw), draw(dh)], [width - 1 - draw(dw), draw(dh)],
           [width - 1 - draw(dw), height - 1 - draw(dh)], [draw(dw), height - 1 - draw(dh)]]
    start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    return [start, end]


def corner_homography(start: Corners, end: Corners, height: int, width: int) -> torch.Tensor:
    """The h [3, 3] (normalized coordinates) of torchvision's `perspective(img, start, end)`: the image
    content at `start` moves to `end`.

    torchvision solves the pixel homography H_px that maps `end` to `start` and evaluates it at the pixel
    centers i + 0.5 (its `_perspective_grid`); in normalized coordinates that is S^-1 H_px S with
    S: p -> (p + 1) * side / 2. Solved in float64.
    """
    rows, rhs = [], []
    for (sx, sy), (ex, ey) in zip(start, end):   # H_px maps (ex, ey) to (sx, sy)
        rows.append([ex, ey, 1, 0, 0, 0, -sx * ex, -sx * ey])
        rows.append([0, 0, 0, ex, ey, 1, -sy * ex, -sy * ey])
        rhs += [sx, sy]
    coeffs = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs, dtype=torch.float64))
    h_px = torch.cat([coeffs, torch.ones(1, dtype=torch.float64)]).reshape(3, 3)
    s = torch.tensor([[width / 2, 0, width / 2], [0, height / 2, height / 2], [0, 0, 1]], dtype=torch.float64)
    return (torch.linalg.inv(s) @ h_px @ s).float()


def random_perspective(x: torch.Tensor, distortion: float = 0.15, p: float = 0.9,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Warp each sample of x [N, C, H, W] by its own random perspective with probability p (else keep it).

    The generator (CPU) decides which samples are warped and how; the same seed gives the same warps.
    """
    if x.ndim != 4:
        raise ValueError(f"random_perspective takes [N, C, H, W], got {list(x.shape)}")
    hh, ww = x.shape[-2:]
    out = []
    for sample in x:
        if float(torch.rand((), generator=generator)) < p:
            start, end = perspective_corners(hh, ww, distortion, generator)
            sample = perspective_warp(sample[None], corner_homography(start, end, hh, ww))[0]
        out.append(sample)
    return torch.stack(out)


# ---------------------------------------------------------------------------------- near-identity draw
def random_homographies(n: int, strength: float, gen: torch.Generator) -> torch.Tensor:
    """[n, 3, 3] homographies near the identity in normalized coordinates: affine entries perturbed by
    U(-strength, strength), perspective entries by U(-strength/2, strength/2)."""
    u = torch.rand(n, 8, generator=gen, device=gen.device) * 2 - 1
    h = torch.eye(3, device=gen.device).repeat(n, 1, 1)
    h[:, 0, :] += strength * u[:, 0:3]
    h[:, 1, :] += strength * u[:, 3:6]
    h[:, 2, :2] += 0.5 * strength * u[:, 6:8]
    return h
