"""Aligned faces pasted back into their photographs, and the masks that blend them.

`paste_back_(photo, face, transform)` warps an aligned (inverted, edited) face back into the photo
through the inverse of the transform, blending it with a feathered mask (the face's landmark hull with a
forehead, or the whole square), one band of rows at a time inside the square's bounding box.
"""

from __future__ import annotations

import math
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .transform import FaceTransform

MASKS = ("face", "square")


def _signed_distance(points: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    """Signed distance [P] of points [P, 2] to a convex polygon [K, 2] (either orientation): negative inside.
    Outside near a corner it is the largest edge distance, a slight underestimate that only rounds the
    feather there. One edge at a time: memory O(P)."""
    a, b = polygon, polygon.roll(-1, dims=0)
    edge = b - a
    area2 = (a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]).sum()           # twice the signed area: the orientation
    normal = torch.stack([edge[:, 1], -edge[:, 0]], dim=1) * torch.sign(area2)   # outward
    normal = normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-12)
    offset = (a * normal).sum(dim=1)                                 # edge k: points p with p . n_k = offset_k
    out = torch.full(points.shape[:1], -math.inf, dtype=points.dtype)
    for n, c in zip(normal, offset):
        torch.maximum(out, points @ n - c, out=out)
    return out


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull [K, 2] of points [N, 2] (Andrew's monotone chain)."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: List[tuple] = []
    upper: List[tuple] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


# How far above the eyebrows the blend reaches, in eye-to-mouth distances. 0.7 reached the hairline, and the
# blurred fringe of a 64 px reconstruction's hair came with it: a dark band across the forehead of the photo.
FOREHEAD = 0.45


def landmark_polygon(landmarks: np.ndarray, forehead: float = FOREHEAD) -> np.ndarray:
    """The face region of 68 landmarks [68, 2] (dlib's order), in their coordinates: the convex hull [K, 2] of the
    jaw line, the eyebrows, and the eyebrows raised by `forehead` x the eye-to-mouth distance (the forehead, which
    the 68 landmarks do not reach)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eyes, mouth = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2, (lm[48] + lm[54]) / 2
    up = eyes - mouth
    return _convex_hull(np.concatenate([lm[0:17], lm[17:27], lm[17:27] + forehead * up]))


def face_polygon(transform: FaceTransform, forehead: float = FOREHEAD) -> np.ndarray:
    """The face region in aligned coordinates (`landmark_polygon` of the transform's landmarks, aligned)."""
    return landmark_polygon(transform.to_aligned(np.asarray(transform.landmarks)), forehead)


def face_mask(transform: FaceTransform, uv: torch.Tensor, kind: str = "face", feather: float = 0.05,
              forehead: float = FOREHEAD) -> torch.Tensor:
    """Blend weights [P] in [0, 1] at aligned coordinates uv [P, 2].

    kind: 'face' (the landmark hull with a forehead, `face_polygon`, inside the square) or 'square' (the
    whole aligned square). feather: width of the ramp from 1 to 0, as a fraction of the square's side;
    the ramp lies inside the hull (0 on its edge: nothing of the reconstruction around the face, such as
    its hair, reaches the photo) and inside the square's edge.
    """
    if kind not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {kind!r}")
    if not 0 < feather <= 0.5:
        raise ValueError(f"feather must be in (0, 0.5], got {feather!r}")
    square = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]], dtype=uv.dtype)
    w = ((-_signed_distance(uv, square)) / feather).clamp(0, 1)
    if kind == "face":
        hull = torch.as_tensor(face_polygon(transform, forehead), dtype=uv.dtype)
        w = torch.minimum(w, (-_signed_distance(uv, hull) / feather).clamp(0, 1))
    return w * w * (3 - 2 * w)   # smoothstep: no visible edge where the ramp starts or ends


def paste_back_(photo: Image.Image, face: torch.Tensor, transform: FaceTransform, mask: str = "face",
                feather: float = 0.05, rows: int = 256) -> Image.Image:
    """Put an aligned face [3, R, R] in [-1, 1] (any R) back into its RGB photo, in place; returns the photo.

    The face is warped through the inverse of `transform` (bicubic; antialiased first when the photo holds
    the square at fewer than R pixels) and blended by `face_mask(transform, ..., mask, feather)`. Only the
    square's bounding box is read and written, `rows` rows at a time: memory beyond the photo stays a few
    times rows x the box's width.
    """
    if photo.mode != "RGB":
        raise ValueError(f"paste_back takes an RGB photo (latentspaces.images.read_photo), got mode {photo.mode!r}")
    if tuple(photo.size) != tuple(transform.photo_size):
        raise ValueError(f"the photo is {photo.width}x{photo.height} but the face was aligned in a "
                         f"{transform.photo_size[0]}x{transform.photo_size[1]} photo ({transform.photo or 'no file'})")
    if face.ndim != 3 or face.shape[0] != 3 or face.shape[1] != face.shape[2]:
        raise ValueError(f"face must be one aligned image [3, R, R], got {tuple(face.shape)}")
    if not torch.isfinite(face).all():
        raise ValueError("face holds NaN or inf values")
    if not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive int, got {rows!r}")
    box = transform.bounds()
    if box is None:
        return photo
    src = (face.detach().float().cpu()[None] + 1) / 2                       # [1, 3, R, R] in [0, 1]
    target = max(1, int(round(transform.qsize)))
    if src.shape[-1] > target:                                              # reduce before sampling: no aliasing
        src = F.interpolate(src, size=(target, target), mode="bicubic", align_corners=False, antialias=True)
    m = transform.matrix()
    inverse = torch.as_tensor(np.linalg.inv(m[:, :2]), dtype=torch.float32)
    origin = torch.as_tensor(m[:, 2], dtype=torch.float32)
    left, top, right, bottom = box
    xs = torch.arange(left, right, dtype=torch.float32) + 0.5
    for y0 in range(top, bottom, rows):
        y1 = min(y0 + rows, bottom)
        band = (left, y0, right, y1)
        ys = torch.arange(y0, y1, dtype=torch.float32) + 0.5
        xy = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
        uv = (xy - origin) @ inverse.T                                      # [P, 2] aligned coordinates
        weight = face_mask(transform, uv, mask, feather).reshape(y1 - y0, right - left, 1)
        if not bool((weight > 0).any()):
            continue
        grid = (uv * 2 - 1).reshape(1, y1 - y0, right - left, 2)
        warped = F.grid_sample(src, grid, mode="bicubic", padding_mode="border", align_corners=False)
        warped = warped[0].permute(1, 2, 0).clamp(0, 1) * 255               # [h, w, 3]
        region = torch.from_numpy(np.asarray(photo.crop(band), dtype=np.float32))
        mixed = region + (warped - region) * weight
        photo.paste(Image.fromarray(mixed.round().clamp(0, 255).to(torch.uint8).numpy(), "RGB"), band[:2])
    return photo


def paste_back(photo: Image.Image, face: torch.Tensor, transform: FaceTransform, **kwargs: object) -> Image.Image:
    """`paste_back_` on a copy of the photo (twice the photo's memory; use paste_back_ for large photos)."""
    return paste_back_(photo.copy(), face, transform, **kwargs)


def mask_image(transform: FaceTransform, size: int, kind: str = "face", feather: float = 0.05) -> torch.Tensor:
    """The blend weights over the aligned square at size x size pixels, [size, size] in [0, 1]."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    uv = torch.stack(torch.meshgrid(c, c, indexing="xy"), dim=-1).reshape(-1, 2)
    return face_mask(transform, uv, kind, feather).reshape(size, size)


__all__ = ["FOREHEAD", "MASKS", "face_mask", "face_polygon", "landmark_polygon", "mask_image", "paste_back",
           "paste_back_"]
