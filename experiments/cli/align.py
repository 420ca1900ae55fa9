"""`latentspaces align`: find the faces of photos and align them as FFHQ was made.

    latentspaces align photo.jpg --size 256 --out runs/me  # runs/me/photo_0.png, alignment.json
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from latentspaces.align import MAX_TRANSFORM, FaceAligner
from latentspaces.errors import FaceNotFoundError

from ..argtypes import UsageError, finite_float, int_in, out_dir, photo_files
from ..config import Config, add_config_flags, option
from ..photos import align_photos, check_photos
from .common import add_face_flag

NAME = "align"
HELP = "find the faces of photos and align them as FFHQ was made"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class AlignConfig(Config):
    """Every face of the photos, aligned as FFHQ was made (`latentspaces.align.FaceAligner`)."""

    size: int = option(1024, "side of the aligned images, px (FFHQ's; the default model is 64)", type=int_in(8, 4096))
    supersample: int = option(4, "the square is resampled at size x this first, then reduced (FFHQ's)",
                              type=int_in(1, 8))
    detector: str = option("hog", "dlib's HOG detector or its CNN detector (slower; better on turned and small "
                                  "faces)", choices=("hog", "cnn"))
    upsample: int = option(1, "times the detector doubles the photo; each finds faces half as large",
                           type=int_in(0, 3))
    min_score: float = option(0.3, "detections scoring below this are dropped unexamined (dlib's own threshold is "
                                   "0); the rest must pass the landmark check to count as faces", type=finite_float)
    refine: bool = option(True, "one landmark pass only (default: a second pass on the aligned face, steadier "
                                "landmarks)", negative=True, default_text="two passes")


CONFIG = AlignConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("photos", nargs="+", type=photo_files, metavar="PHOTO",
                   help="photo files or folders of them; each face is written as OUT/<photo stem>_<face>.png, face 0 "
                        "the most confident, and its transform back to the photo to OUT/alignment.json (with every "
                        "candidate the detector reported and why it was kept or dropped)")
    p.add_argument("--out", required=True, type=out_dir, help="output folder")
    add_config_flags(p, AlignConfig)
    add_face_flag(p)


def check(args: argparse.Namespace) -> None:
    """The photos (folders expanded; args.photos becomes one flat list), the size of the transform."""
    args.photos = [f for files in args.photos for f in files]
    c = AlignConfig.from_args(args)
    if c.size * c.supersample > MAX_TRANSFORM:
        raise UsageError(f"--size {c.size} x --supersample {c.supersample} = {c.size * c.supersample} px per side "
                         f"exceeds {MAX_TRANSFORM}; lower --supersample")
    check_photos(args.photos, args.out)


def run(args: argparse.Namespace) -> None:
    c = AlignConfig.from_args(args)
    aligner = FaceAligner(size=c.size, supersample=c.supersample, detector=c.detector, upsample=c.upsample,
                          min_score=c.min_score, refine=c.refine)
    out = Path(args.out)
    t = time.time()
    names, failures = align_photos(args.photos, out, aligner, keep_going=True, face=args.face)
    if not names:   # nothing was written: one error line, no claim of a file
        raise FaceNotFoundError(failures[0] if len(failures) == 1 else
                                f"none of the {len(args.photos)} photos gave a face: {'; '.join(failures)}")
    print(f"wrote {len(names)} aligned face{'s' if len(names) != 1 else ''} ({c.size} px) and {out}/alignment.json "
          f"({time.time() - t:.1f} s)")
    if failures:
        raise ValueError(f"{len(failures)} of {len(args.photos)} photos gave no face: {'; '.join(failures)}")
