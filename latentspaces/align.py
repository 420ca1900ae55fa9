"""Faces of photographs aligned the way FFHQ was made, and aligned faces pasted back into their photographs.

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

Faces are found by dlib's HOG detector (default; `detector="cnn"` takes dlib's MMOD CNN detector from
`mmod_human_face_detector.dat`, slower on a CPU, better on rotated and small faces); photos larger than
`detect_size` are searched at that size. The 68 landmarks (`shape_predictor_68_face_landmarks.dat`) are
predicted at full resolution in a crop around each detection (faces wider than `landmark_size` pixels
are predicted on a reduced copy of the crop). With `refine` (default) they are predicted a second time,
by the same model, on the face aligned at 512 px by the first ones: the predictor then sees every face
upright and at one scale, and the FFHQ steps run on these landmarks. On the astronaut rotated, scaled and
shifted in a larger canvas the aligned faces agree with the original's to a median 37 dB PSNR, against
30 dB from one pass (BENCHMARKS.md). Both model files come with the face-recognition-models wheel
(`latentspaces.dlib_models`); nothing is downloaded.

Coordinates: "photo coordinates" are continuous pixel coordinates, pixel (i, j) covering [i, i + 1) x
[j, j + 1) (Pillow's convention; a pixel's centre is at i + 0.5). "Aligned coordinates" (u, v) are in
[0, 1]^2 over the aligned square, (0, 0) its top-left corner, so any resolution of an aligned face (an
inversion at 64 px of a face aligned at 1024) maps back with the same transform.

`paste_back_(photo, face, transform)` warps an aligned (inverted, edited) face back into the photo
through the inverse of the transform, blending it with a feathered mask (the face's landmark hull with a
forehead, or the whole square), one band of rows at a time inside the square's bounding box.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image

from .dlib_models import import_dlib, model_path
from .errors import CheckpointError, FaceNotFoundError
from .images import read_photo
from .io import atomic_write_text, from_uint8

PathLike = Union[str, os.PathLike]
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")
MASKS = ("face", "square")
ALIGNMENT_FORMAT = "latentspaces.alignment"   # the JSON file of `save_alignment`
MAX_TRANSFORM = 16384                         # transform_size limit: a 16384^2 RGB image is 1 GiB
REFINE_SIZE = 512                             # the second landmark pass sees the face aligned at this size
REFINE_BOX = (0.21, 0.31, 0.79, 0.88)         # its face box when HOG finds none there: the median HOG box on aligned
                                              # faces (held-out targets, the astronaut), as fractions of the side

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
    face: int = 0                    # the face's rank in its photo, 0 = the largest detection
    photo: str = ""                  # the photo's file (absolute), when it was read from one

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
        return asdict(self)

    @classmethod
    def from_json(cls, d: object, where: str = "the alignment") -> "FaceTransform":
        """A transform from `to_json`'s dict; CheckpointError naming `where` and the field when it is not one."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{where}: a face entry must be a JSON object, got {type(d).__name__}")
        missing = [f for f in cls.__dataclass_fields__ if f not in d and f not in ("face", "photo")]
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
        return cls(quad=quad, photo_size=_ints(d, "photo_size", 2, 1, where), size=_ints(d, "size", 1, 1, where)[0],
                   landmarks=_points(d, "landmarks", 68, where), box=_ints(d, "box", 4, -2**31, where),
                   score=float(score), shrink=_ints(d, "shrink", 1, 1, where)[0], crop=_ints(d, "crop", 4, 0, where),
                   pad=_ints(d, "pad", 4, 0, where), transform_size=_ints(d, "transform_size", 1, 1, where)[0],
                   face=_ints(dict(face=d.get("face", 0)), "face", 1, 0, where)[0], photo=photo)


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


# ---------------------------------------------------------------------------------- detection and landmarks
@dataclass(frozen=True)
class Detection:
    box: Box                         # (left, top, right, bottom) in photo px, right/bottom exclusive
    score: float                     # HOG: SVM margin; CNN: confidence

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1)


def keep_distinct(found: Sequence[Detection], overlap: float = 0.5) -> List[Detection]:
    """Detections of distinct faces, largest first: a detection covering more than `overlap` of a better
    scored one (dlib's HOG runs five filters and can report one face twice) is dropped."""
    kept: List[Detection] = []
    for d in sorted(found, key=lambda d: -d.score):
        if all(_overlap(d.box, k.box) <= overlap for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: (-d.area, -d.score))


class FaceAligner:
    """Finds the faces of photographs and aligns each as FFHQ was made (see the module docstring).

        aligner = FaceAligner(size=256)
        faces = aligner.align_file("photo.jpg")        # [Face], largest first; FaceNotFoundError if none
        faces[0].image                                  # [3, 256, 256] in [-1, 1]
        faces[0].transform.to_json()                    # back to the photo: paste_back_(photo, x, transform)
    """

    def __init__(
        self,
        size: int = 1024,            # side of the aligned images, px (FFHQ: 1024)
        supersample: int = 4,        # transform_size = size * supersample (the FFHQ script: 4096 for 1024)
        detector: str = "hog",       # 'hog' (dlib's frontal HOG detector) or 'cnn' (its MMOD CNN; ~20x slower on a CPU)
        upsample: int = 1,           # times the detector doubles the photo first (each finds faces half as large), >= 0
        min_score: float = 0.2,      # detections below are dropped (dlib's own threshold is 0; on the astronaut photo
                                     # it also reports the mission patch on her suit, at 0.12)
        detect_size: int = 1600,     # photos with a longer side are searched at this size (landmarks: full resolution)
        landmark_size: int = 400,    # faces wider than this many px get their landmarks on a reduced crop
        padding: bool = True,        # FFHQ's reflect padding with the blurred blend where the square leaves the photo
        refine: bool = True,         # predict the landmarks a second time on the face aligned at REFINE_SIZE px (below)
    ):
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        for name, value, low in (("size", size, 1), ("supersample", supersample, 1), ("upsample", upsample, 0),
                                 ("detect_size", detect_size, 64), ("landmark_size", landmark_size, 64)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if size * supersample > MAX_TRANSFORM:
            raise ValueError(f"size {size} x supersample {supersample} exceeds the {MAX_TRANSFORM} px transform limit")
        if not math.isfinite(min_score):
            raise ValueError(f"min_score must be finite, got {min_score!r}")
        dlib = import_dlib("face alignment")
        instead = "align the faces with another tool and pass the aligned images as targets"
        self._dlib = dlib
        self.predictor = dlib.shape_predictor(str(model_path(LANDMARKS_68, instead)))
        self._hog = dlib.get_frontal_face_detector()   # also finds the face box of the refinement pass
        if detector == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(str(model_path(CNN_DETECTOR, "use detector='hog'")))
        self.size, self.supersample, self.detector, self.upsample = size, supersample, detector, upsample
        self.min_score, self.detect_size, self.landmark_size = min_score, detect_size, landmark_size
        self.padding, self.refine = padding, refine

    def settings(self) -> str:
        return (f"dlib {self.detector} detector, upsample {self.upsample}, min score {self.min_score:g}, "
                f"searched at <= {self.detect_size} px")

    def detect(self, photo: Image.Image) -> List[Detection]:
        """The faces of an RGB photo, distinct, largest first."""
        s = min(1.0, self.detect_size / max(photo.size))
        small = photo if s == 1.0 else photo.resize((max(1, round(photo.width * s)), max(1, round(photo.height * s))),
                                                    Image.LANCZOS, reducing_gap=3.0)
        sx, sy = photo.width / small.width, photo.height / small.height
        a = np.asarray(small)
        if self.detector == "hog":
            rects, scores, _ = self._hog.run(a, self.upsample, 0.0)
            found = list(zip(rects, scores))
        else:
            found = [(d.rect, d.confidence) for d in self._cnn(a, self.upsample)]
        out = []
        for r, score in found:
            if score < self.min_score:
                continue
            box = (int(np.floor(r.left() * sx)), int(np.floor(r.top() * sy)), int(np.ceil((r.right() + 1) * sx)),
                   int(np.ceil((r.bottom() + 1) * sy)))
            box = (max(box[0], 0), max(box[1], 0), min(box[2], photo.width), min(box[3], photo.height))
            if box[2] > box[0] and box[3] > box[1]:
                out.append(Detection(box, float(score)))
        return keep_distinct(out)

    def landmarks(self, photo: Image.Image, box: Box) -> np.ndarray:
        """dlib's 68 landmarks [68, 2] of the face in `box`, photo coordinates (continuous)."""
        left, top, right, bottom = box
        w, h = right - left, bottom - top
        margin = max(w, h) // 2
        region = (max(left - margin, 0), max(top - margin, 0), min(right + margin, photo.width),
                  min(bottom + margin, photo.height))
        rw, rh = region[2] - region[0], region[3] - region[1]
        s = min(1.0, self.landmark_size / max(w, h))
        if s < 1.0:
            img = photo.resize((max(1, round(rw * s)), max(1, round(rh * s))), Image.LANCZOS, box=region)
        else:
            img = photo.crop(region)
        sx, sy = rw / img.width, rh / img.height
        rect = self._dlib.rectangle(int(round((left - region[0]) / sx)), int(round((top - region[1]) / sy)),
                                    int(round((right - region[0]) / sx)) - 1, int(round((bottom - region[1]) / sy)) - 1)
        lm = (self._predict(img, rect) + 0.5) * [sx, sy] + region[:2]
        return self._refined(photo, lm) if self.refine else lm

    def _predict(self, img: Image.Image, rect) -> np.ndarray:
        """dlib's 68 landmarks [68, 2] in the pixel indices of img (integers: dlib rounds them)."""
        shape = self.predictor(np.asarray(img), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def _refined(self, photo: Image.Image, lm: np.ndarray) -> np.ndarray:
        """The landmarks predicted again on the face aligned (FFHQ, REFINE_SIZE px) by the first ones.

        The predictor then sees the face upright and at one scale wherever and however it sits in the photo,
        with the box dlib's HOG detector gives it there (the box the predictor was trained with; REFINE_BOX if
        none), and its integer outputs are 1/512 of the square apart: the aligned faces of one photo rotated,
        scaled and shifted agree to within a few dB more PSNR than those of one pass (BENCHMARKS.md)."""
        img, fields = ffhq_align(photo, lm, REFINE_SIZE, 2, self.padding)
        first = FaceTransform(landmarks=tuple(map(tuple, lm)), box=(0, 0, 1, 1), score=0.0, **fields)
        rects, scores, _ = self._hog.run(np.asarray(img), 0, -0.5)
        if len(rects):
            rect = rects[int(np.argmax(scores))]
        else:
            rect = self._dlib.rectangle(*(int(round(c * REFINE_SIZE)) for c in REFINE_BOX))
        return first.to_photo((self._predict(img, rect) + 0.5) / REFINE_SIZE)

    def align(self, photo: Image.Image, name: str = "the photo", path: str = "") -> List[Face]:
        """Every face of an RGB photo, aligned, largest first; FaceNotFoundError naming `name` when there is none."""
        if photo.mode != "RGB":
            raise ValueError(f"align takes an RGB photo (latentspaces.images.read_photo), got mode {photo.mode!r}")
        found = self.detect(photo)
        if not found:
            raise FaceNotFoundError(f"{name}: no face found ({photo.width}x{photo.height}; {self.settings()}); try "
                                    "--upsample 2 for small faces, or --detector cnn for turned faces")
        faces = []
        for rank, d in enumerate(found):
            lm = self.landmarks(photo, d.box)
            img, fields = ffhq_align(photo, lm, self.size, self.supersample, self.padding)
            transform = FaceTransform(landmarks=tuple((float(x), float(y)) for x, y in lm), box=d.box, score=d.score,
                                      face=rank, photo=path, **fields)
            faces.append(Face(from_uint8(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)), transform))
        return faces

    def align_file(self, path: PathLike, verbose: bool = False) -> List[Face]:
        """Every face of an image file (read by `latentspaces.images.read_photo`), aligned, largest first."""
        photo, notes = read_photo(path)
        if verbose:
            for note in notes:
                print(note)
        return self.align(photo, name=os.fspath(path), path=str(Path(path).resolve()))


def align_faces(path: PathLike, size: int = 1024, **settings: object) -> List[Face]:
    """Every face of an image file aligned as FFHQ was made, largest first (see `FaceAligner` for settings)."""
    return FaceAligner(size=size, **settings).align_file(path)


# ---------------------------------------------------------------------------------- the alignment file
def save_alignment(path: PathLike, faces: Sequence[Tuple[str, FaceTransform]]) -> None:
    """Write (aligned image file name, transform) pairs to a JSON file, atomically."""
    names = [name for name, _ in faces]
    if len(set(names)) != len(names):
        raise ValueError(f"aligned file names must be distinct, got {names}")
    doc = {"format": ALIGNMENT_FORMAT, "version": 1,
           "faces": [dict(file=name, **t.to_json()) for name, t in faces]}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def load_alignment(path: PathLike) -> Dict[str, FaceTransform]:
    """The {aligned image file name: transform} of a file written by `save_alignment`, in its order."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no alignment file at {path}")
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: not a JSON alignment file ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(doc, dict) or doc.get("format") != ALIGNMENT_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(f"{path}: not a latentspaces alignment file (format {got!r}, expected "
                              f"{ALIGNMENT_FORMAT!r}; `latentspaces align` writes them)")
    if doc.get("version") != 1:
        raise CheckpointError(f"{path}: alignment file version {doc.get('version')!r}; this version reads 1")
    entries = doc.get("faces")
    if not isinstance(entries, list):
        raise CheckpointError(f"{path}: 'faces' must be a list")
    out: Dict[str, FaceTransform] = {}
    for i, entry in enumerate(entries):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{path}: face {i} has no aligned file name ('file')")
        if name in out:
            raise CheckpointError(f"{path}: {name} is listed twice")
        out[name] = FaceTransform.from_json({k: v for k, v in entry.items() if k != "file"}, f"{path}, {name}")
    return out


# ---------------------------------------------------------------------------------- paste-back
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


def face_polygon(transform: FaceTransform, forehead: float = 0.7) -> np.ndarray:
    """The face region in aligned coordinates: the convex hull of the jaw line, the eyebrows, and the eyebrows
    raised by `forehead` x the eye-to-mouth distance (the forehead, which the 68 landmarks do not reach)."""
    lm = transform.to_aligned(np.asarray(transform.landmarks))
    eyes, mouth = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2, (lm[48] + lm[54]) / 2
    up = eyes - mouth
    return _convex_hull(np.concatenate([lm[0:17], lm[17:27], lm[17:27] + forehead * up]))


def face_mask(transform: FaceTransform, uv: torch.Tensor, kind: str = "face", feather: float = 0.05,
              forehead: float = 0.7) -> torch.Tensor:
    """Blend weights [P] in [0, 1] at aligned coordinates uv [P, 2].

    kind: 'face' (the landmark hull with a forehead, `face_polygon`, inside the square) or 'square' (the
    whole aligned square). feather: width of the ramp from 1 to 0, as a fraction of the square's side;
    the ramp is centred on the hull's edge and ends on the square's edge.
    """
    if kind not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {kind!r}")
    if not 0 < feather <= 0.5:
        raise ValueError(f"feather must be in (0, 0.5], got {feather!r}")
    square = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]], dtype=uv.dtype)
    w = ((-_signed_distance(uv, square)) / feather).clamp(0, 1)
    if kind == "face":
        hull = torch.as_tensor(face_polygon(transform, forehead), dtype=uv.dtype)
        w = torch.minimum(w, (0.5 - _signed_distance(uv, hull) / feather).clamp(0, 1))
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


__all__ = ["ALIGNMENT_FORMAT", "CNN_DETECTOR", "DETECTORS", "Detection", "Face", "FaceAligner", "FaceTransform",
           "LANDMARKS_68", "MASKS", "align_faces", "face_mask", "face_polygon", "ffhq_align", "ffhq_quad",
           "keep_distinct", "load_alignment", "mask_image", "paste_back", "paste_back_", "save_alignment"]
