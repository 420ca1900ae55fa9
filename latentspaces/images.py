"""Image files <-> tensors: float32 NCHW RGB in [-1, 1] at the generator resolution."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import torch

from .io import atomic_path, from_uint8, to_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_images(paths: Sequence[Union[str, os.PathLike]], resolution: int, verbose: bool = True) -> torch.Tensor:
    """Read PNG/JPEG files as RGB, center-crop to square and resize (Lanczos) to `resolution`.

    Returns [N, 3, resolution, resolution] in [-1, 1]; says so when an image is cropped or resized.
    A directory argument expands to the image files inside it (sorted).
    """
    from PIL import Image

    files: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no image file or folder at {p}")
    if not files:
        raise ValueError(f"no images found in {[str(p) for p in paths]} (looked for {IMAGE_SUFFIXES})")
    out = []
    for f in files:
        try:
            img = Image.open(f).convert("RGB")
        except Exception as e:
            raise ValueError(f"{f}: not a readable image ({e})") from e
        w, h = img.size
        if w != h:
            s = min(w, h)
            img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            if verbose:
                print(f"{f}: center-cropped {w}x{h} to {s}x{s}")
        if img.size[0] != resolution:
            if verbose:
                print(f"{f}: resized {img.size[0]}x{img.size[1]} to {resolution}x{resolution} (the generator's resolution)")
            img = img.resize((resolution, resolution), Image.LANCZOS)
        out.append(from_uint8(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)))
    return torch.stack(out)


def save_images(images: torch.Tensor, path: Union[str, os.PathLike], nrow: int = 8) -> None:
    """Save [N, 3, H, W] in [-1, 1] as one PNG grid."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(to_uint8(images).float() / 255, tmp, nrow=nrow, padding=1, format="png")
