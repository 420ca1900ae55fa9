"""Face alignment and paste-back on scikit-image's astronaut: accuracy and time.

    python -m experiments.benchmarks.bench_align

For each of several rotated (-25..30 deg), scaled (0.6..3.0x) and shifted copies of the photo in a
larger gray canvas, the face aligned at 256 px is compared with the original photo's alignment (PSNR,
images in [-1, 1]), with the second landmark pass (the default) and with one pass (`refine=False`, the
FFHQ procedure alone). Then: where landmarks found again on an aligned face put the eyes, against the
FFHQ positions (x = 3/8, 5/8 of the width), the PSNR of an unedited face pasted back (inside the face
mask), and the time of each step. Prints one line per measurement.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from skimage import data

from latentspaces.align import FaceAligner, face_mask, paste_back
from latentspaces.images import to_uint8

# (angle in degrees, scale, shift in pixels) of the moved copies
COPIES = [(12.0, 1.8, (60, -40)), (-8.0, 0.8, (-150, 90)), (25.0, 2.6, (30, 20)), (-25.0, 1.2, (0, 0)),
          (30.0, 0.6, (80, 80)), (5.0, 3.0, (-40, 10)), (-15.0, 2.0, (100, -100)), (18.0, 1.0, (-60, 60)),
          (-3.0, 1.5, (20, -20))]


def moved_copy(photo: Image.Image, angle: float, scale: float, shift) -> Image.Image:
    """The photo rotated, scaled and shifted inside a gray canvas large enough to hold all of it."""
    a = np.deg2rad(angle)
    A = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = np.array(photo.size) / 2
    corners = (np.array([[0, 0], [photo.width, 0], [0, photo.height], [photo.width, photo.height]]) - centre) @ A.T
    size = tuple(int(v) for v in np.ceil(2 * (np.abs(corners).max(axis=0) + 120 + np.abs(shift))))
    t = np.array(size) / 2 + np.asarray(shift) - A @ centre
    inverse = np.linalg.inv(A)
    offset = -inverse @ t
    return photo.transform(size, Image.AFFINE, (*inverse[0], offset[0], *inverse[1], offset[1]), Image.BICUBIC,
                           fillcolor=(90, 90, 90))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / (a - b).square().mean()))


def eyes(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks)
    return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)])


def main() -> None:
    photo = Image.fromarray(data.astronaut())
    for refine in (True, False):
        aligner = FaceAligner(size=256, refine=refine)
        reference = aligner.align(photo)[0]
        values = []
        for angle, scale, shift in COPIES:
            faces = aligner.align(moved_copy(photo, angle, scale, shift))
            values.append(max(psnr(f.image, reference.image) for f in faces))
        label = "second landmark pass" if refine else "one landmark pass"
        print(f"{label}: PSNR vs the original's alignment per copy (dB): {' '.join(f'{v:.1f}' for v in values)}; "
              f"min {min(values):.1f}, median {np.median(values):.1f}")
    aligner = FaceAligner(size=256)
    face = aligner.align(photo)[0]
    plain = FaceAligner(size=256, refine=False)
    aligned = Image.fromarray(to_uint8(face.image).permute(1, 2, 0).numpy())
    found = eyes(plain.landmarks(aligned, plain.detect(aligned)[0].box)) / 256
    print(f"eyes found again on the aligned face: x {found[:, 0].round(4).tolist()}, y {found[:, 1].round(4).tolist()}; "
          f"off FFHQ's x = 0.375 / 0.625 by {100 * np.abs(found[:, 0] - [0.375, 0.625]).max():.2f}% of the width")
    for size in (64, 256, 1024):
        sized = FaceAligner(size=size)
        t = time.perf_counter()
        ref = sized.align(photo)[0]
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        out = paste_back(photo, ref.image, ref.transform)
        paste = time.perf_counter() - t
        a, b = np.asarray(photo, dtype=np.float64), np.asarray(out, dtype=np.float64)
        xs, ys = np.meshgrid(np.arange(photo.width) + 0.5, np.arange(photo.height) + 0.5)
        uv = ref.transform.to_aligned(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        weight = face_mask(ref.transform, torch.as_tensor(uv, dtype=torch.float32)).reshape(a.shape[:2]).numpy()
        inside = weight > 0.99
        print(f"{size} px: align {seconds:.2f} s, paste-back {1000 * paste:.0f} ms, paste-back PSNR inside the mask "
              f"{10 * np.log10(255 ** 2 / ((a - b)[inside] ** 2).mean()):.1f} dB ({int(inside.sum())} px), outside "
              f"unchanged: {bool(np.array_equal(a[weight == 0], b[weight == 0]))}")


if __name__ == "__main__":
    main()
