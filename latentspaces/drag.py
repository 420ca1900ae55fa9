"""Point dragging on any latent space's code: "Drag Your GAN: Interactive Point-based Manipulation on the
Generative Image Manifold" (Pan et al., SIGGRAPH 2023), following its released code (XingangPan/DragGAN,
`viz/renderer.py`, read for the order of a step and its numbers; not yet run beside this one on the same
weights, so "as released" below means "as that code is written").

    result = drag(space, code, handles=[(31, 40)], targets=[(31, 46)])   # (x, y) pixels of the R x R image
    result.code, result.points[-1], result.reached

Each step renders the code once and reads the output of one conv layer (`DragSettings.feature_layer`),
upsampled bilinearly to the image size (F in the paper). Then, as released:

1. Point tracking (Sec. 3.3): each handle moves to the pixel of a (2 r2 + 1)^2 patch around it whose feature
   is nearest (L2) to the handle's feature in the first render.
2. Stop when every handle is within `tolerance` px of its target (released: max(2, 2 R / 512)).
3. Motion supervision (Sec. 3.2, Eq. 1 as released): for each handle p farther than 1 px from its target t,
   with d = (t - p) / |t - p|, the L1 distance between F at the pixels q of the disc |q - p| < r1 and a
   detached copy of F sampled bilinearly at q - d; plus lambda_mask x L1(F - F0) outside the editable
   region (the paper's (1 - M)); plus lambda_reg x L1(code - code0). One Adam step (lr 1e-3) on what the
   space moves (`LatentSpace.drag_masks`: the ws of the coarse layers, ws 0-5 as released; F spaces' f),
   then the space's projection (Z-type rows back to the sphere).

Coordinates: points are (x, y) in pixels of the generator's R x R image, x to the right, y down (the
released code keeps (row, col); we convert). Handles are rounded to pixels, as released, and tracking
keeps them on pixels.

Defaults at the users' scale: for generators of 128 px and more, the released numbers: the output of the 6th
synthesis block (b128.conv1), r1 = 3 and r2 = 12 at 512 px scaled with the resolution (6 and 24 at 1024
px). Below 128 px there is no 6th block and the scaled disc is empty (3 x 64 / 512 < 1), so the 64 px
default model takes the layer and radii measured in BENCHMARKS.md ("Drag: feature layer and radii at 64
px"). Departures from the released code, all below a pixel: pixel coordinates are exact integers (the
released grid is `linspace(0, R, R)`, up to 1 px stretched at the far edge), and the shifted copy is
sampled with border clamping at the image edge (released: zero padding).

Fast path: only the pixels a step reads are upsampled (`upsampled_at`, equal to indexing
`F.interpolate(..., mode='bilinear', align_corners=False)`, which `reference=True` runs instead), so a
1024 px drag without a mask never holds the 256 x 1024 x 1024 upsampled map; a mask needs it whole.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .spaces.base import LatentSpace
from .spaces.code import Code

Point = Tuple[float, float]                 # (x, y) in pixels of the R x R image

RELEASED_AT = 512                           # the released radii are stated at this resolution
RELEASED_R1, RELEASED_R2 = 3, 12            # motion-supervision disc and tracking patch radii at 512 px
RELEASED_BLOCK = 128                        # feature_idx 5: the output of the 6th block, b128, at any resolution
RELEASED_MOVED_WS = 6                       # W+ rows 0-5 move (the layers up to 32 px at every resolution)
# The 64 px default model (no 6th block; the released disc scales to nothing): measured in BENCHMARKS.md,
# "Drag: feature layer and radii at 64 px".
SMALL_MODEL_LAYER, SMALL_MODEL_R1, SMALL_MODEL_R2 = "b32.conv1", 1, 3
MAX_DRAG_STEPS = 10_000


@dataclass(frozen=True)
class DragSettings:
    """The numbers of a drag; None fields take the default for the generator's resolution (`resolved`)."""

    feature_layer: Optional[str] = None   # conv layer whose output is F (None: b128.conv1 from 128 px, else measured)
    r1: Optional[int] = None              # motion-supervision disc radius, px (pixels with |q - p| < r1)
    r2: Optional[int] = None              # tracking patch half-size, px (a (2 r2 + 1)^2 square)
    tolerance: Optional[float] = None     # stop when every handle is this close to its target, px (max(2, 2R/512))
    lr: float = 1e-3                      # Adam learning rate (released default)
    lambda_mask: float = 10.0             # weight of L1(F - F0) outside the editable region (released)
    lambda_reg: float = 0.0               # weight of L1(code - code0) (released `reg`, 0 by default)
    max_steps: int = 300                  # at most this many Adam steps (ours: the released UI runs until stopped)
    moved_ws: int = RELEASED_MOVED_WS     # the drag moves ws 0 .. moved_ws - 1 (per-layer spaces)
    move_base: bool = True                # F spaces: f moves too

    def resolved(self, resolution: int, layers: Sequence[str]) -> "DragSettings":
        """These settings with every None filled for an R px generator whose conv layers are `layers`, and checked
        (ValueError naming the setting)."""
        big = resolution >= RELEASED_BLOCK
        scale = resolution / RELEASED_AT
        out = replace(
            self,
            feature_layer=self.feature_layer or (f"b{RELEASED_BLOCK}.conv1" if big else SMALL_MODEL_LAYER),
            r1=self.r1 if self.r1 is not None else (max(1, round(RELEASED_R1 * scale)) if big else SMALL_MODEL_R1),
            r2=self.r2 if self.r2 is not None else (max(1, round(RELEASED_R2 * scale)) if big else SMALL_MODEL_R2),
            tolerance=self.tolerance if self.tolerance is not None else max(2.0, 2.0 * scale))
        if out.feature_layer not in layers:
            raise ValueError(f"feature_layer {out.feature_layer!r} is not a conv layer of this generator "
                             f"({', '.join(layers)})")
        for name in ("r1", "r2"):
            v = getattr(out, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= resolution:
                raise ValueError(f"{name} must be a whole number of pixels in 1 .. {resolution}, got {v!r}")
        for name in ("tolerance", "lr"):
            v = getattr(out, name)
            if not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("lambda_mask", "lambda_reg"):
            v = getattr(out, name)
            if not (isinstance(v, numbers.Real) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        steps = out.max_steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 0 <= steps <= MAX_DRAG_STEPS:
            raise ValueError(f"max_steps must be a whole number in 0 .. {MAX_DRAG_STEPS}, got {steps!r}")
        if isinstance(out.moved_ws, bool) or not isinstance(out.moved_ws, numbers.Integral) or out.moved_ws < 0:
            raise ValueError(f"moved_ws must be a whole number >= 0, got {out.moved_ws!r}")
        return out


@dataclass
class DragStep:
    """What `on_step` sees after each render: the step (Adam steps done), the tracked points [K, 2] (x, y), their
    distances to the targets [K] (px), the image [1, 3, R, R] in [-1, 1] (detached) and the step's loss (None on
    the render that stops)."""

    step: int
    points: torch.Tensor
    distances: torch.Tensor
    image: torch.Tensor
    loss: Optional[float]


@dataclass
class DragResult:
    """code: the dragged code (the space's, batch 1); image: its render [1, 3, R, R]; points: the tracked handles
    after every render [steps + 1, K, 2] (x, y; row 0 the handles); distances [steps + 1, K] to the targets;
    reached: every handle within the tolerance; stopped: on_step asked to stop; images: the renders
    [steps + 1, 3, R, R] uint8 when asked for (else None); settings: the resolved settings."""

    code: Code
    image: torch.Tensor
    points: torch.Tensor
    distances: torch.Tensor
    steps: int
    reached: bool
    stopped: bool
    seconds: float
    settings: DragSettings
    images: Optional[torch.Tensor] = None
    losses: List[float] = field(default_factory=list)


def upsampled_at(feature: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: int) -> torch.Tensor:
    """F.interpolate(feature, (size, size), mode='bilinear', align_corners=False)[0, :, rows, cols] without the
    full map: feature [1, C, h, w]; rows, cols: integer pixel indices [P] in 0 .. size - 1; returns [C, P].
    The source coordinate of pixel i is (i + 0.5) h / size - 0.5, clamped at 0, as PyTorch computes it."""
    _, _, h, w = feature.shape

    def corners(index: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = ((index.to(feature.dtype) + 0.5) * (n / size) - 0.5).clamp(min=0)
        lo = src.floor().long().clamp(max=n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        return lo, hi, src - lo
    y0, y1, wy = corners(rows, h)
    x0, x1, wx = corners(cols, w)
    f = feature[0]
    return ((1 - wy) * ((1 - wx) * f[:, y0, x0] + wx * f[:, y0, x1])
            + wy * ((1 - wx) * f[:, y1, x0] + wx * f[:, y1, x1]))


def _bilinear_at(feature: torch.Tensor, y: torch.Tensor, x: torch.Tensor, size: int) -> torch.Tensor:
    """The upsampled map sampled bilinearly at real pixel positions (y, x) [P] (clamped to the image): [C, P]."""
    y, x = y.clamp(0, size - 1), x.clamp(0, size - 1)
    y0, x0 = y.floor(), x.floor()
    y1, x1 = (y0 + 1).clamp(max=size - 1), (x0 + 1).clamp(max=size - 1)
    wy, wx = y - y0, x - x0
    at = lambda r, c: upsampled_at(feature, r.long(), c.long(), size)   # noqa: E731
    return (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1))


def disc(center: torch.Tensor, radius: int, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixels (rows, cols) [P] of the image with |q - center| < radius; center (row, col) on a pixel."""
    at, inside = _around(center.float()[None], _offsets(radius, square=False), size)
    return at[0][inside[0], 0].long(), at[0][inside[0], 1].long()


def _around(points: torch.Tensor, offsets: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pixels points[k] + offsets[j] for every handle at once: positions [K, J, 2] (row, col; clamped into the
    image so that they can be read) and whether each lies inside the image [K, J]."""
    at = points[:, None, :] + offsets[None]
    inside = ((at >= 0) & (at <= size - 1)).all(-1)
    return at.clamp(0, size - 1), inside


def _offsets(radius: int, square: bool) -> torch.Tensor:
    """Integer (row, col) offsets [J, 2] in row-major order: the square of half-size `radius`, or the disc
    |offset| < radius (the released motion disc's strict inequality)."""
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    rows, cols = torch.meshgrid(r, r, indexing="ij")
    grid = torch.stack([rows.reshape(-1), cols.reshape(-1)], -1)
    return grid if square else grid[grid.square().sum(-1) < radius ** 2]


class _Features:
    """F of one render: the feature map [1, C, h, w] and its values at pixels of the R x R image."""

    def __init__(self, feature: torch.Tensor, size: int, reference: bool):
        self.feature, self.size = feature, size
        self.full = F.interpolate(feature, (size, size), mode="bilinear", align_corners=False) if reference else None

    def at(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        if self.full is not None:
            return self.full[0][:, rows, cols]
        return upsampled_at(self.feature, rows.to(self.feature.device), cols.to(self.feature.device), self.size)

    def bilinear(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.full is None:
            return _bilinear_at(self.feature, y, x, self.size)
        # grid_sample with align_corners=True reads pixel centres at integer positions, as released
        grid = torch.stack([x / (self.size - 1) * 2 - 1, y / (self.size - 1) * 2 - 1], -1)[None, None]
        return F.grid_sample(self.full, grid, align_corners=True, padding_mode="border")[0, :, 0]

    def whole(self) -> torch.Tensor:
        if self.full is None:
            self.full = F.interpolate(self.feature, (self.size, self.size), mode="bilinear", align_corners=False)
        return self.full


def _point_list(name: str, points: Sequence[Point], size: int) -> torch.Tensor:
    """Points as a float tensor [K, 2] (x, y), or ValueError naming the bad one."""
    try:
        t = torch.as_tensor([[float(p[0]), float(p[1])] for p in points], dtype=torch.float32)
        if any(len(p) != 2 for p in points):
            raise ValueError
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{name} must be a list of (x, y) pixel pairs, got {points!r}") from None
    if t.numel() == 0:
        raise ValueError(f"no {name}: give at least one (x, y) pair")
    for i, (x, y) in enumerate(t.tolist()):
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= size - 1 and 0 <= y <= size - 1):
            raise ValueError(f"{name}[{i}] = ({x:g}, {y:g}) is outside the {size} x {size} image (x and y in 0 .. "
                             f"{size - 1})")
    return t


def check_points(handles: Sequence[Point], targets: Sequence[Point], size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Handles and targets as float tensors [K, 2] (x, y), or ValueError naming the first bad point (outside the
    R x R image, not a pair of numbers) or the mismatch of their counts."""
    p, t = _point_list("handles", handles, size), _point_list("targets", targets, size)
    if p.shape != t.shape:
        raise ValueError(f"{len(p)} handles but {len(t)} targets: give one target per handle")
    return p, t


def _check_mask(mask: Optional[torch.Tensor], size: int, device: torch.device) -> Optional[torch.Tensor]:
    """The editable region as a float [1, 1, R, R] of 0/1 (1: may change), or ValueError."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.shape[-2:] != (size, size) or mask.numel() != size * size:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be [{size}, {size}] (the generator's image size; 1 where the drag may change the "
                         f"image), got {shape}")
    m = mask.reshape(1, 1, size, size).to(device, torch.float32)
    if not torch.isfinite(m).all() or ((m != 0) & (m != 1)).any():
        raise ValueError("mask must hold only 0 (keep) and 1 (may change)")
    return m


def drag(
    space: LatentSpace,
    code: Code,                                  # one code of `space` (batch 1), the start
    handles: Sequence[Point],                    # K handle points (x, y), px of the R x R image
    targets: Sequence[Point],                    # K target points, same order
    mask: Optional[torch.Tensor] = None,         # [R, R] 0/1: 1 where the image may change (None: everywhere)
    settings: Optional[DragSettings] = None,     # None: DragSettings() resolved for the generator
    on_step: Optional[Callable[[DragStep], Optional[bool]]] = None,   # return True to stop; an exception propagates
    keep_images: bool = False,                   # also return every render as uint8 [steps + 1, 3, R, R]
    reference: bool = False,                     # upsample the whole feature map each step (the slow reference)
) -> DragResult:
    """Drag the handles of `code`'s image to the targets (module docstring); the code is not modified."""
    G = space.G
    size = G.resolution
    s = (settings or DragSettings()).resolved(size, list(G.synthesis.feature_layers))
    if len(code) != 1:
        raise ValueError(f"drag takes one code (batch 1), got {len(code)}")
    p, t = check_points(handles, targets, size)
    keep = _check_mask(mask, size, space.device)
    rows_cols = lambda xy: xy.flip(-1)                                            # noqa: E731  (x, y) -> (row, col)
    points = rows_cols(p).round()                                                  # [K, 2] (row, col), on pixels
    goal = rows_cols(t)

    work = code.detach().clone()          # the given code, as it is: what the drag does not move stays bit for bit
    start = work.detach().clone()
    masks = space.drag_masks(work, range(s.moved_ws), s.move_base)
    params = [work[k] for k in work.fields if masks[k].any()]
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=s.lr)

    captured: Dict[str, torch.Tensor] = {}

    def capture(x: torch.Tensor) -> torch.Tensor:
        captured["f"] = x
        return x

    def render() -> Tuple[torch.Tensor, _Features]:
        captured.clear()
        image = space.synthesize(work, edits={s.feature_layer: capture})
        if "f" not in captured:
            raise ValueError(f"{space.name} does not run {s.feature_layer} (its codes start above it, at "
                             f"{getattr(space, 'layer', '?')}): choose a feature_layer above the base code")
        return image, _Features(captured["f"], size, reference)

    patch, disc_offsets = _offsets(s.r2, square=True), _offsets(s.r1, square=False)
    t0 = time.perf_counter()
    history, dists, images, losses = [], [], [], []
    refs: Optional[torch.Tensor] = None
    f0_full: Optional[torch.Tensor] = None
    steps, reached, stopped = 0, False, False
    while True:
        image, feats = render()
        with torch.no_grad():
            if refs is None:                                                      # the handles' features at start
                refs = feats.at(points[:, 0].long(), points[:, 1].long()).detach()    # [C, K]
                if keep is not None:
                    f0_full = feats.whole().detach()
            # tracking: each handle to the nearest neighbour of its first feature in its square (every handle at
            # once; the first minimum in row-major order of the part inside the image, as released)
            at, inside = _around(points, patch, size)
            found = feats.at(at[..., 0].reshape(-1).long(), at[..., 1].reshape(-1).long())   # [C, K J]
            d = (found.view(found.shape[0], *inside.shape) - refs[:, :, None]).norm(dim=0)
            points = at[torch.arange(len(points)), d.masked_fill(~inside, math.inf).argmin(1)]
            distance = (goal - points).norm(dim=1)
        history.append(points.flip(-1).clone())
        dists.append(distance.clone())
        if keep_images:
            images.append(((image.detach()[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
        reached = bool((distance <= s.tolerance).all())
        done = reached or steps >= s.max_steps
        loss = None
        if not done:
            # motion supervision, every handle farther than 1 px at once: sum over handles of the mean L1 over its
            # disc's pixels inside the image and the channels (the released per-handle F.l1_loss, summed)
            moving = distance > 1
            direction = (goal - points) / (distance[:, None] + 1e-7)             # unit (row, col) [K, 2]
            at, inside = _around(points[moving], disc_offsets, size)          # [M, J, 2]
            rows, cols = at[..., 0].reshape(-1), at[..., 1].reshape(-1)
            here = feats.at(rows.long(), cols.long())                           # [C, M J], with gradient
            step = direction[moving][:, None, :].expand_as(at).reshape(-1, 2)
            shifted = feats.bilinear(rows - step[:, 0], cols - step[:, 1]).detach()
            per_pixel = (here - shifted).abs().mean(0).view(inside.shape)        # [M, J]
            weight = inside.float() / inside.sum(1, keepdim=True).clamp(min=1)
            loss = (per_pixel * weight).sum()
            if keep is not None:
                loss = loss + s.lambda_mask * F.l1_loss(feats.whole() * (1 - keep), f0_full * (1 - keep))
            if s.lambda_reg:
                loss = loss + s.lambda_reg * sum(F.l1_loss(work[k] * masks[k], start[k] * masks[k])
                                                 for k in work.fields)
            losses.append(loss.item())
        if on_step is not None and on_step(DragStep(steps, history[-1], distance, image.detach(), losses[-1]
                                                    if loss is not None else None)):
            stopped = True
            break
        if done:
            break
        opt.zero_grad(set_to_none=False)
        if loss.requires_grad:
            loss.backward()
            for k in work.fields:
                if work[k].grad is not None:
                    work[k].grad.mul_(masks[k])
            opt.step()
        with torch.no_grad():
            space.project_(work)
            for k in work.fields:     # what does not move stays bit for bit (no re-projection drift)
                work[k].copy_(torch.where(masks[k].bool(), work[k], start[k]))
        steps += 1
    final = work.detach().clone()
    return DragResult(code=final, image=image.detach(), points=torch.stack(history), distances=torch.stack(dists),
                      steps=steps, reached=reached, stopped=stopped, seconds=time.perf_counter() - t0, settings=s,
                      images=torch.stack(images) if keep_images else None, losses=losses)


__all__ = ["DragResult", "DragSettings", "DragStep", "check_points", "MAX_DRAG_STEPS", "RELEASED_BLOCK", "RELEASED_MOVED_WS",
           "RELEASED_R1", "RELEASED_R2", "disc", "drag", "upsampled_at"]
