"""Faces found in photographs and their landmarks: dlib's detectors (`Detection`, `keep_distinct`) and
`FaceAligner`, which aligns each face it finds by the FFHQ procedure of `latentspaces.align.transform`.

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
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from PIL import Image

from ..dlib_models import import_dlib, model_path
from ..errors import FaceNotFoundError
from ..images import from_uint8, read_photo
from ..storage import PathLike
from .transform import MAX_TRANSFORM, Box, Face, FaceTransform, ffhq_align

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")
REFINE_SIZE = 512                             # the second landmark pass sees the face aligned at this size
REFINE_BOX = (0.21, 0.31, 0.79, 0.88)         # its face box when HOG finds none there: the median HOG box on aligned
                                              # faces (held-out targets, the astronaut), as fractions of the side


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
    """Finds the faces of photographs and aligns each as FFHQ was made (see the module docstring, and
    `latentspaces.align.transform`'s for the FFHQ steps).

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


__all__ = ["CNN_DETECTOR", "DETECTORS", "Detection", "FaceAligner", "LANDMARKS_68", "REFINE_BOX", "REFINE_SIZE",
           "align_faces", "keep_distinct"]
