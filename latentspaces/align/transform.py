"""The FFHQ crop: an aligned face's square in its photo (`FaceTransform`, `Face`) and the procedure that
cuts it out (`ffhq_quad`, `ffhq_align`).

FFHQ ("A Style-Based Generator Architecture for Generative Adversarial Networks", Karras, Laine and
Aila, 2019, appendix A; the procedure is `recreate_aligned_images` in NVlabs' ffhq-dataset download
script) cuts each face out along an oriented square computed from dlib's 68 landmarks:

    eye_left, eye_right = mean of landmarks 36-41, of 42-47     mouth_left, mouth_right = landmarks 48, 54
    eye_avg   = (eye_left + eye_right) / 2                       eye_to_eye   = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) / 2                   eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - turn(eye_to_mouth), rescaled to length max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)
    y = turn(x)                        turn(a, b) = (-b, a): a quarter turn, from "right" to "down" in image axes
    c = eye_avg + 0.1 eye_to_mouth
    quad = (c - x - y, c - x + y, c + x + y, c + x - y)          the aligned image's top-left, bottom-left,
                                                                 bottom-right and top-right corners

and resamples the square in five steps, each as the script does it (qsize = 2 |x|, the square's side):

1. shrink: shrink = floor(qsize / size / 2); when > 1 the photo is resized by 1 / shrink (Lanczos, the
   script's ANTIALIAS; new size rounded) and the quad divided by shrink;
2. crop: to the quad's bounding box grown by border = max(round(0.1 qsize), 3) pixels, inside the photo;
3. pad: when the quad reaches past the photo by more than border - 4 pixels, each side is reflect-padded
   by max(what it lacks + border, round(0.3 qsize)) pixels and blended: towards a Gaussian blur (sigma
   0.02 qsize) with weight clip(3 m + 1, 0, 1), then towards the median colour with weight clip(m, 0, 1),
   where m = max over the axes of 1 - min(distance to the two padded edges / their pad widths) (m = 1 on
   the outer edge, 0 where the pad meets the photo, < 0 inside);
4. transform: the quad is mapped onto a square of transform_size pixels (Pillow's QUAD transform of the
   quad + 0.5, the landmarks being pixel indices; bilinear);
5. resize: to size x size (Lanczos) when transform_size is larger.

The script renders 1024 px through a 4096 px transform. Here transform_size = size * supersample, so the
default supersample 4 is the script's ratio at every size (size 1024 reproduces it), and memory follows
the requested size. The shrunk photo is made for the cropped region only (Pillow's resize of a box reads
the source pixels a crop of the whole resized photo would; the results agree to one 8-bit level, see
`ffhq_align`), so aligning a face holds no more than the decoded photo and buffers the size of the face's
square, which after the shrink is under 4 output sizes a side (BENCHMARKS.md: ~90 MiB beyond the photo at
size 256, ~120 MiB at 1024, for a 12 and a 48 megapixel photo alike).

Coordinates: "photo coordinates" are continuous pixel coordinates, pixel (i, j) covering [i, i + 1) x
[j, j + 1) (Pillow's convention; a pixel's centre is at i + 0.5). "Aligned coordinates" (u, v) are in
[0, 1]^2 over the aligned square, (0, 0) its top-left corner, so any resolution of an aligned face (an
inversion at 64 px of a face aligned at 1024) maps back with the same transform.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np
import scipy.ndimage
import torch
from PIL import Image

from ..errors import CheckpointError

MAX_TRANSFORM = 16384                         # transform_size limit: a 16384^2 RGB image is 1 GiB

Point = Tuple[float, float]
Box = Tuple[int, int, int, int]


# ---------------------------------------------------------------------------------- the transform
@dataclass(frozen=True)
class FaceTransform:
    """Where an aligned face came from: its square in the photo, and the steps that resampled it.

    `to_photo` / `to_aligned` map between aligned coordinates (u, v) in [0, 1]^2 and photo coordinates;
    the quad is a square (a parallelogram to within the shrink's rounding of the photo's size), so the map
    is affine, a similarity up to that rounding. The other fields
    record the FFHQ steps (see the module docstring) so that an alignment can be audited and rerun.
    """

    quad: Tuple[Point, ...]          # 4 corners of the aligned square in photo coordinates (px, continuous): the
                                     # aligned image's top-left, bottom-left, bottom-right, top-right
    photo_size: Tuple[int, int]      # (width, height) of the photo the face was aligned in, EXIF orientation applied
    size: int                        # side of the aligned image, px
    landmarks: Tuple[Point, ...]     # dlib's 68 landmarks in photo coordinates (centre of a pixel: index + 0.5)
    box: Box                         # detection rectangle (left, top, right, bottom), photo px, right/bottom exclusive
    score: float                     # the detector's score (HOG: SVM margin; CNN: confidence)
    shrink: int                      # step 1: the photo was resized by 1 / shrink (1: not resized)
    crop: Box                        # step 2: crop box (left, top, right, bottom) in the (shrunk) photo's pixels
    pad: Box                         # step 3: reflect padding (left, top, right, bottom), px; zeros: none
    transform_size: int              # step 4: side of the supersampled square, px
    face: int = 0                    # the face's rank in its photo, 0 = the most confident face
    photo: str = ""                  # the photo's file (absolute; in a file, relative = beside it), when read from one
    confidence: float = 0.0          # dlib HOG's score on the aligned face (`FaceAligner.examine`); 0 when not measured
    gray: bool = False               # the photo is grayscale: pasted-back edits are made gray too

    @property
    def qsize(self) -> float:
        """Side of the square in photo pixels."""
        q = np.asarray(self.quad)
        return float(np.hypot(*(q[3] - q[0])))

    def bounds(self) -> Optional[Box]:
        """The photo pixels the square touches (left, top, right, bottom; right/bottom exclusive), clipped to the
        photo; None when the square misses the photo."""
        q = np.asarray(self.quad)
        left, top = np.floor(q.min(axis=0)).astype(int)
        right, bottom = np.ceil(q.max(axis=0)).astype(int)
        width, height = self.photo_size
        box = (max(int(left), 0), max(int(top), 0), min(int(right), width), min(int(bottom), height))
        return box if box[2] > box[0] and box[3] > box[1] else None

    def matrix(self) -> np.ndarray:
        """[2, 3] affine map: (u, v, 1) in aligned coordinates -> photo coordinates."""
        q = np.asarray(self.quad, dtype=np.float64)
        return np.stack([q[3] - q[0], q[1] - q[0], q[0]], axis=1)

    def to_photo(self, uv: np.ndarray) -> np.ndarray:
        """Aligned coordinates [..., 2] -> photo coordinates [..., 2]."""
        m = self.matrix()
        return np.asarray(uv, dtype=np.float64) @ m[:, :2].T + m[:, 2]

    def to_aligned(self, xy: np.ndarray) -> np.ndarray:
        """Photo coordinates [..., 2] -> aligned coordinates [..., 2]."""
        m = self.matrix()
        return (np.asarray(xy, dtype=np.float64) - m[:, 2]) @ np.linalg.inv(m[:, :2]).T

    def to_json(self) -> dict:
        """The transform as plain JSON values (`from_json` reads it back)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: object, where: str = "the alignment") -> "FaceTransform":
        """A transform from `to_json`'s dict; CheckpointError naming `where` and the field when it is not one."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{where}: a face entry must be a JSON object, got {type(d).__name__}")
        missing = [f for f in cls.__dataclass_fields__ if f not in d and f not in ("face", "photo", "confidence", "gray")]
        if missing:
            raise CheckpointError(f"{where}: face entry without {', '.join(missing)}")
        quad = _points(d, "quad", 4, where)
        q = np.asarray(quad)
        if np.hypot(*(q[3] - q[0])) < 1e-6 or np.abs(q[2] - (q[1] + q[3] - q[0])).max() > 1e-3 * (1 + np.abs(q).max()):
            raise CheckpointError(f"{where}: quad {quad} is not a parallelogram of positive size")
        score = d["score"]
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise CheckpointError(f"{where}: score must be a finite number, got {score!r}")
        photo = d.get("photo", "")
        if not isinstance(photo, str):
            raise CheckpointError(f"{where}: photo must be a path string, got {photo!r}")
        confidence, gray = d.get("confidence", 0.0), d.get("gray", False)
        if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not math.isfinite(confidence):
            raise CheckpointError(f"{where}: confidence must be a finite number, got {confidence!r}")
        if not isinstance(gray, bool):
            raise CheckpointError(f"{where}: gray must be true or false, got {gray!r}")
        return cls(quad=quad, photo_size=_ints(d, "photo_size", 2, 1, where), size=_ints(d, "size", 1, 1, where)[0],
                   landmarks=_points(d, "landmarks", 68, where), box=_ints(d, "box", 4, -2**31, where),
                   score=float(score), shrink=_ints(d, "shrink", 1, 1, where)[0], crop=_ints(d, "crop", 4, 0, where),
                   pad=_ints(d, "pad", 4, 0, where), transform_size=_ints(d, "transform_size", 1, 1, where)[0],
                   face=_ints(dict(face=d.get("face", 0)), "face", 1, 0, where)[0], photo=photo,
                   confidence=float(confidence), gray=gray)


def _points(d: dict, key: str, n: int, where: str) -> Tuple[Point, ...]:
    """d[key] as n finite (x, y) pairs."""
    v = d[key]
    ok = isinstance(v, list) and len(v) == n and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                    and math.isfinite(c) for c in p) for p in v)
    if not ok:
        raise CheckpointError(f"{where}: {key} must be {n} finite [x, y] pairs")
    return tuple((float(x), float(y)) for x, y in v)


def _ints(d: dict, key: str, n: int, low: int, where: str) -> Tuple[int, ...]:
    """d[key] as n integers >= low (one integer: the value itself, or a list of n)."""
    v = d[key]
    values = v if isinstance(v, list) else [v]
    if len(values) != n or (n > 1 and not isinstance(v, list)) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= low for i in values):
        raise CheckpointError(f"{where}: {key} must be {'an integer' if n == 1 else f'{n} integers'} >= {low}, "
                              f"got {v!r}")
    return tuple(values)


@dataclass(frozen=True)
class Face:
    """One aligned face: the image and the transform back to its photo."""

    image: torch.Tensor              # [3, size, size] float32 in [-1, 1]
    transform: FaceTransform


# ---------------------------------------------------------------------------------- the FFHQ procedure
def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ square [4, 2] (top-left, bottom-left, bottom-right, top-right) of 68 landmarks [68, 2].

    In the landmarks' own coordinates (the script's: pixel indices). See the module docstring."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks must be 68 finite (x, y) points, got shape {lm.shape}")
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg

    def turn(v: np.ndarray) -> np.ndarray:   # the script's np.flipud(v) * [-1, 1]
        return np.array([-v[1], v[0]])

    x = eye_to_eye - turn(eye_to_mouth)
    length = np.hypot(*x)
    if not length > 1e-6:
        raise ValueError("degenerate landmarks: the eyes and the mouth give no orientation")
    x = x / length * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = turn(x)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _blend_padding(img: np.ndarray, pad: Box, qsize: float) -> np.ndarray:
    """Step 3's blend of a reflect-padded float32 [H, W, 3] image (in place; returns it)."""
    h, w, _ = img.shape
    left, top, right, bottom = (max(p, 1) for p in pad)   # the pads are >= round(0.3 qsize) >= 1 for any real face
    xs = np.arange(w, dtype=np.float32)[None, :, None]
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    m = np.maximum(1.0 - np.minimum(xs / left, (w - 1 - xs) / right), 1.0 - np.minimum(ys / top, (h - 1 - ys) / bottom))
    sigma = qsize * 0.02
    blurred = scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0])
    img += (blurred - img) * np.clip(m * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(m, 0.0, 1.0)
    return img


def ffhq_align(photo: Image.Image, landmarks: np.ndarray, size: int, supersample: int = 4,
               padding: bool = True, region_only: bool = True) -> Tuple[Image.Image, dict]:
    """One face of an RGB photo aligned by the FFHQ procedure -> (size x size RGB image, the transform's fields).

    landmarks: [68, 2] in photo coordinates (continuous: dlib's pixel indices + 0.5).
    size: side of the aligned image; supersample: transform_size = size * supersample (4: the script's).
    padding: step 3 (the script's enable_padding); without it the square is black beyond the photo.
    region_only: step 1 resizes only the region step 2 keeps; False resizes the whole photo first, as the
    script does: the reference, needing memory for the whole shrunk photo. The two agree to one 8-bit
    level (Pillow may order its two resampling passes differently for a box, and rounds in between).
    The fields returned are those of `FaceTransform` that the procedure decides (quad, shrink, crop, pad,
    transform_size, photo_size, size).
    """
    if photo.mode != "RGB":
        raise ValueError(f"ffhq_align takes an RGB photo (latentspaces.images.read_photo), got mode {photo.mode!r}")
    if not isinstance(size, int) or size < 1 or not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"size and supersample must be positive ints, got {size!r} and {supersample!r}")
    transform_size = size * supersample
    if transform_size > MAX_TRANSFORM:
        raise ValueError(f"size {size} x supersample {supersample} = {transform_size} px exceeds {MAX_TRANSFORM}")
    width, height = photo.size
    quad = ffhq_quad(np.asarray(landmarks, dtype=np.float64) - 0.5)   # the script's pixel-index coordinates
    qsize = np.hypot(*(quad[3] - quad[0]))

    # 1. shrink (only the region step 2 keeps is resized: see the module docstring)
    shrink = int(np.floor(qsize / size * 0.5))
    scale = (1.0, 1.0)                 # photo pixels per pixel of the (shrunk) image
    img_w, img_h = width, height
    if shrink > 1:
        img_w, img_h = int(np.rint(width / shrink)), int(np.rint(height / shrink))
        scale = (width / img_w, height / img_h)
        quad = quad / shrink
        qsize = qsize / shrink
    else:
        shrink = 1

    # 2. crop
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, img_w), min(hi[1] + border, img_h))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ValueError(f"the face's square {quad.round(1).tolist()} lies outside the {width}x{height} photo")
    if shrink > 1 and region_only:
        box = (crop[0] * scale[0], crop[1] * scale[1], crop[2] * scale[0], crop[3] * scale[1])
        img = photo.resize((crop[2] - crop[0], crop[3] - crop[1]), Image.LANCZOS, box=box)
    elif shrink > 1:
        img = photo.resize((img_w, img_h), Image.LANCZOS).crop(crop)
    else:
        img = photo.crop(crop)
    quad = quad - crop[:2]

    # 3. pad
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0), max(hi[0] - img.width + border, 0),
           max(hi[1] - img.height + border, 0))
    if padding and max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3))) for p in pad)
        a = np.pad(np.asarray(img, dtype=np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        a = _blend_padding(a, pad, qsize)
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")
        quad = quad + pad[:2]
    else:
        pad = (0, 0, 0, 0)

    # 4. transform, 5. resize
    img = img.transform((transform_size, transform_size), Image.QUAD, tuple((quad + 0.5).flatten()), Image.BILINEAR)
    if size < transform_size:
        img = img.resize((size, size), Image.LANCZOS)

    # the square actually sampled, in photo coordinates: undo step 3, step 2, then step 1 (its true scale)
    sampled = (quad + 0.5 - pad[:2] + crop[:2]) * scale
    return img, dict(quad=tuple((float(x), float(y)) for x, y in sampled), photo_size=(width, height), size=size,
                     shrink=shrink, crop=tuple(int(c) for c in crop), pad=tuple(int(p) for p in pad),
                     transform_size=transform_size)


__all__ = ["Box", "Face", "FaceTransform", "MAX_TRANSFORM", "Point", "ffhq_align", "ffhq_quad"]
