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
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..dlib_models import import_dlib, model_path
from ..errors import FaceNotFoundError
from ..images import from_uint8, is_gray, read_photo
from ..storage import PathLike
from .transform import MAX_TRANSFORM, Box, Face, FaceTransform, ffhq_align

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")
REFINE_SIZE = 512                             # the second landmark pass sees the face aligned at this size
REFINE_BOX = (0.21, 0.31, 0.79, 0.88)         # its face box when HOG finds none there: the median HOG box on aligned
                                              # faces (held-out targets, the astronaut), as fractions of the side
# A candidate is a face when its 68 landmarks agree between the two passes: dlib's predictor returns a face-shaped
# set of points for any box, but only on a face does the second pass (on the crop the first aligned) land where
# the first did. RMS move over the inter-ocular distance, measured on the astronaut rotated +-10 degrees, flipped
# and moved in a 1600x1200 canvas: faces 0.013-0.016; the mission patch and the name tag on her suit 0.16-0.53.
MAX_LANDMARK_SHIFT = 0.08


@dataclass(frozen=True)
class Detection:
    box: Box                         # (left, top, right, bottom) in photo px, right/bottom exclusive
    score: float                     # HOG: SVM margin; CNN: confidence

    @property
    def area(self) -> int:
        """The box's area, px^2."""
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass(frozen=True)
class Candidate:
    """A detection examined by its landmarks: kept as a face, or dropped with the reason."""

    detection: Detection
    landmarks: np.ndarray            # [68, 2] photo coordinates (the refined pass when the aligner refines)
    landmark_shift: float            # RMS move of the landmarks between the two passes / inter-ocular distance
    confidence: float                # dlib HOG's score on the face aligned by the landmarks (upright, 512 px)
    kept: bool
    reason: str = ""                 # why it was dropped ('' when kept)

    def describe(self) -> str:
        """One line: box, detector score, landmark shift, confidence and verdict."""
        d = self.detection
        verdict = "face" if self.kept else f"dropped: {self.reason}"
        checked = "" if math.isnan(self.landmark_shift) else \
            f", landmark shift {self.landmark_shift:.3f}, confidence {self.confidence:.2f}"
        return f"box {d.box[0]},{d.box[1]}-{d.box[2]},{d.box[3]} ({d.box[2] - d.box[0]} px), detector {d.score:.2f}{checked} -> {verdict}"

    def to_json(self) -> dict:
        """The candidate as the alignment file records it (null where the landmarks were not examined)."""
        d = self.detection
        measured = not math.isnan(self.landmark_shift)   # JSON has no NaN: null when not examined
        return {"box": list(d.box), "score": round(d.score, 4),
                "landmark_shift": round(self.landmark_shift, 4) if measured else None,
                "confidence": round(self.confidence, 4) if measured else None,
                "verdict": "face" if self.kept else "dropped", "reason": self.reason}


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
        min_score: float = 0.3,      # detections below are not examined (dlib's own threshold is 0; on the astronaut
                                     # it also reports the mission patch and name tag on her suit, at 0.003-0.56:
                                     # the landmark check below drops those)
        max_landmark_shift: float = MAX_LANDMARK_SHIFT,  # candidates whose landmarks move more are not faces
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
        if not (math.isfinite(max_landmark_shift) and max_landmark_shift > 0):
            raise ValueError(f"max_landmark_shift must be a positive number, got {max_landmark_shift!r}")
        dlib = import_dlib("face alignment")
        instead = "align the faces with another tool and pass the aligned images as targets"
        self._dlib = dlib
        self.predictor = dlib.shape_predictor(str(model_path(LANDMARKS_68, instead)))
        self._hog = dlib.get_frontal_face_detector()   # also finds the face box of the refinement pass
        if detector == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(str(model_path(CNN_DETECTOR, "use detector='hog'")))
        self.size, self.supersample, self.detector, self.upsample = size, supersample, detector, upsample
        self.min_score, self.detect_size, self.landmark_size = min_score, detect_size, landmark_size
        self.padding, self.refine, self.max_landmark_shift = padding, refine, max_landmark_shift

    def settings(self) -> str:
        """The detector's settings in one phrase, for messages."""
        return (f"dlib {self.detector} detector, upsample {self.upsample}, min score {self.min_score:g}, "
                f"searched at <= {self.detect_size} px, landmark shift <= {self.max_landmark_shift:g}")

    def detect(self, photo: Image.Image, min_score: Optional[float] = None) -> List[Detection]:
        """The detections of an RGB photo scoring at least `min_score` (default: the aligner's), distinct, largest
        first."""
        min_score = self.min_score if min_score is None else min_score
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
            if score < min_score:
                continue
            box = (int(np.floor(r.left() * sx)), int(np.floor(r.top() * sy)), int(np.ceil((r.right() + 1) * sx)),
                   int(np.ceil((r.bottom() + 1) * sy)))
            box = (max(box[0], 0), max(box[1], 0), min(box[2], photo.width), min(box[3], photo.height))
            if box[2] > box[0] and box[3] > box[1]:
                out.append(Detection(box, float(score)))
        return keep_distinct(out)

    def landmarks(self, photo: Image.Image, box: Box) -> np.ndarray:
        """dlib's 68 landmarks [68, 2] of the face in `box`, photo coordinates (continuous)."""
        first = self._first_pass(photo, box)
        return self._second_pass(photo, first)[0] if self.refine else first

    def examine(self, photo: Image.Image, detection: Detection) -> Candidate:
        """A detection's landmarks in both passes, their agreement and the aligned face's HOG score: the verdict."""
        first = self._first_pass(photo, detection.box)
        second, confidence = self._second_pass(photo, first)
        eyes = float(np.linalg.norm(second[36:42].mean(0) - second[42:48].mean(0)))
        shift = float(np.sqrt(((first - second) ** 2).sum(1).mean()) / max(eyes, 1e-6))
        kept = shift <= self.max_landmark_shift
        reason = "" if kept else (f"not a face: its landmarks move {shift:.2f} of the eye distance between the two "
                                  f"passes (faces: under {self.max_landmark_shift:g})")
        return Candidate(detection, second if self.refine else first, shift, confidence, kept, reason)

    def candidates(self, photo: Image.Image) -> List[Candidate]:
        """Every detection of an RGB photo (dlib's threshold, score >= 0), those of at least `min_score` examined by
        their landmarks: the faces first, most confident first (larger first on a tie), then the dropped ones
        (so a face-sized thing the detector scored is reported, never silently skipped or taken)."""
        found = []
        for d in self.detect(photo, min(0.0, self.min_score)):
            if d.score >= self.min_score:
                found.append(self.examine(photo, d))
            else:
                found.append(Candidate(d, np.zeros((68, 2)), float("nan"), float("nan"), False,
                                       f"detector score {d.score:.2f} under the minimum {self.min_score:g}"))
        return sorted(found, key=lambda c: (not c.kept, -round(c.confidence, 2) if c.kept else -c.detection.score,
                                            -c.detection.area))

    def _first_pass(self, photo: Image.Image, box: Box) -> np.ndarray:
        """The landmarks predicted in a crop around `box` at full resolution (or at landmark_size px)."""
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
        return (self._predict(img, rect) + 0.5) * [sx, sy] + region[:2]

    def _predict(self, img: Image.Image, rect) -> np.ndarray:
        """dlib's 68 landmarks [68, 2] in the pixel indices of img (integers: dlib rounds them)."""
        shape = self.predictor(np.asarray(img), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def _second_pass(self, photo: Image.Image, lm: np.ndarray) -> Tuple[np.ndarray, float]:
        """(the landmarks predicted again on the face aligned (FFHQ, REFINE_SIZE px) by the first ones, dlib HOG's
        best score on that aligned face, -1 when it finds none above -0.5).

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
        confidence = float(np.max(scores)) if len(rects) else -1.0
        return first.to_photo((self._predict(img, rect) + 0.5) / REFINE_SIZE), confidence

    def aligned_landmarks(self, images: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
        """The 68 landmarks of faces that are already aligned (generator samples, inversions, drags): images
        [N, 3, R, R] in [-1, 1] -> (landmarks [N, 68, 2] as (x, y) pixel positions of the R x R image, found [N]:
        whether HOG found the face; where not, the predictor ran in REFINE_BOX). Each face is enlarged to
        REFINE_SIZE px (bicubic) first: the second pass's view, on which the predictor sees faces of any R at
        one scale."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images must be [N, 3, R, R] in [-1, 1], got {tuple(images.shape)}")
        size = images.shape[-1]
        pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        out, found = np.zeros((len(images), 68, 2)), np.zeros(len(images), dtype=bool)
        for i, x in enumerate(pixels):
            img = Image.fromarray(x.permute(1, 2, 0).numpy()).resize((REFINE_SIZE, REFINE_SIZE), Image.BICUBIC)
            rects, scores, _ = self._hog.run(np.asarray(img), 0, -0.5)
            found[i] = len(rects) > 0
            rect = rects[int(np.argmax(scores))] if len(rects) else \
                self._dlib.rectangle(*(int(round(c * REFINE_SIZE)) for c in REFINE_BOX))
            out[i] = (self._predict(img, rect) + 0.5) * (size / REFINE_SIZE) - 0.5
        return out, found

    def search(self, photo: Image.Image, name: str = "the photo", path: str = "") -> "FaceSearch":
        """Every candidate of an RGB photo examined and every face aligned (`FaceSearch`); FaceNotFoundError naming
        `name` when no candidate is a face."""
        if photo.mode != "RGB":
            raise ValueError(f"align takes an RGB photo (latentspaces.images.read_photo), got mode {photo.mode!r}")
        found = self.candidates(photo)
        kept = [c for c in found if c.kept]
        if not kept:
            dropped = f"{len(found)} candidate{'s' if len(found) != 1 else ''} dropped as not faces; " if found else ""
            raise FaceNotFoundError(f"{name}: no face found ({dropped}{photo.width}x{photo.height}; {self.settings()}); "
                                    "try --upsample 2 for small faces, or --detector cnn for turned faces")
        gray = is_gray(photo)
        faces = []
        for rank, c in enumerate(kept):
            img, fields = ffhq_align(photo, c.landmarks, self.size, self.supersample, self.padding)
            transform = FaceTransform(landmarks=tuple((float(x), float(y)) for x, y in c.landmarks),
                                      box=c.detection.box, score=c.detection.score, face=rank, photo=path,
                                      confidence=c.confidence, gray=gray, **fields)
            faces.append(Face(from_uint8(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)), transform))
        return FaceSearch(faces, found, gray)

    def align(self, photo: Image.Image, name: str = "the photo", path: str = "") -> List[Face]:
        """Every face of an RGB photo, aligned, most confident first (`search`'s faces)."""
        return self.search(photo, name, path).faces

    def search_file(self, path: PathLike, verbose: bool = False) -> "FaceSearch":
        """`search` on an image file (read by `latentspaces.images.read_photo`; verbose: print its notes)."""
        photo, notes = read_photo(path)
        if verbose:
            for note in notes:
                print(note)
        return self.search(photo, name=os.fspath(path), path=str(Path(path).resolve()))

    def align_file(self, path: PathLike, verbose: bool = False) -> List[Face]:
        """Every face of an image file (read by `latentspaces.images.read_photo`), aligned, most confident first."""
        return self.search_file(path, verbose).faces


@dataclass(frozen=True)
class FaceSearch:
    """What `FaceAligner.search` found in one photo: the faces aligned (rank = `face`), every candidate with its
    verdict, and whether the photo is grayscale (its three channels equal everywhere)."""

    faces: List[Face]
    candidates: List[Candidate]
    gray: bool

    @property
    def dropped(self) -> List[Candidate]:
        """The candidates that are not faces, with their reasons."""
        return [c for c in self.candidates if not c.kept]


def align_faces(path: PathLike, size: int = 1024, **settings: object) -> List[Face]:
    """Every face of an image file aligned as FFHQ was made, most confident first (see `FaceAligner` for settings)."""
    return FaceAligner(size=size, **settings).align_file(path)


__all__ = ["CNN_DETECTOR", "DETECTORS", "MAX_LANDMARK_SHIFT", "Candidate", "Detection", "FaceAligner", "FaceSearch",
           "LANDMARKS_68", "REFINE_BOX", "REFINE_SIZE", "align_faces", "keep_distinct"]
