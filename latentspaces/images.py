"""Images: files <-> tensors (float32 NCHW RGB in [-1, 1] at the generator resolution), uint8 conversion,
and the project's own file of image batches.

- `to_uint8` / `from_uint8`: images in [-1, 1] <-> uint8 [0, 255], the one pair of conversions.
- `save_image_file` / `load_image_file`: a batch of images as uint8 [N, 3, R, R] in one safetensors file
  of format `IMAGES_FORMAT` (latentspaces.images), written atomically through `latentspaces.storage`
  (targets and method outputs of a run folder).

`read_image` is the one reader of image files (the command line and the API both use it, through
`load_images`; `read_photo` is the same reader returning the full-size 8-bit RGB photo that face
alignment works on). It decodes each file once, with Pillow, and either converts it correctly or
refuses it with a one-line error naming the file:

- EXIF orientation is applied (a phone photo stored sideways with orientation 6 is rotated upright).
- 8-bit modes: 1, L, P, RGB, RGBX, YCbCr, CMYK (Pillow's formula, no colour management; said in a
  note), and baseline, progressive or CMYK JPEG, PNG, WEBP, BMP, GIF (first frame, said), TIFF.
- Transparency (RGBA, LA, PA, a palette or PNG with a transparent colour): composited over `background`
  (white by default) and said in a note; an alpha channel that is fully opaque is simply dropped.
- 16-bit grayscale (I;16, I;16B, I;16L, and I from a 16-bit PNG or TIFF): divided by 65535, the true
  white of 16 bits, not clipped at 255. 32-bit integer images have no agreed white level: refused.
- 32-bit float (F, float TIFF): read as intensities when every value lies in [0, 1] (said in a note);
  any other range (HDR, [0, 255] floats, NaN) is refused, with the range found and how to fix it.
- Anything else (a folder, a missing path, a truncated or corrupt file, not an image, an unknown mode,
  more pixels than Pillow's decompression-bomb limit) raises: FileNotFoundError for a missing path,
  `CheckpointError` (a ValueError) for the rest.

8-bit images are cropped and resized as uint8 RGB with Pillow's Lanczos filter, as before; higher
depths are resized in float32 and clipped to [0, 1] (Lanczos overshoots at sharp edges), so 16-bit
precision survives. A JPEG at least 4x larger than needed is decoded at a reduced scale (Pillow's
draft mode: the DCT scaled by 1/2, 1/4 or 1/8, never below twice the target size), then resized.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CheckpointError
from .pixels import from_uint8, to_uint8   # the conversions live below, re-exported here
from .storage import PathLike, atomic_path, load_tensors, save_tensors

IMAGES_FORMAT = "latentspaces.images"  # uint8 image batches: tensor `images` [N, 3, R, R] (targets, method outputs)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")  # what a folder expands to
# The only formats Pillow is asked to open (its JPEG opener also reads the MPO files some cameras write): a file of
# another format is refused by name, whatever its suffix says (an EPS named .png never reaches Ghostscript).
READ_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
# The most pixels a file may declare in its header (80 Mpx: 240 MB once decoded as 8-bit RGB, below Pillow's own bomb
# warning at 89 Mpx; a 64 Mpx phone photo fits); a larger image is
# refused before any pixel is decoded, except a JPEG read at a resolution, whose draft mode decodes it reduced.
MAX_IMAGE_PIXELS = 80_000_000
WHITE = (255, 255, 255)

EIGHT_BIT_MODES = ("1", "L", "P", "RGB", "RGBX", "YCbCr", "CMYK", "LA", "La", "PA", "RGBA", "RGBa")
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
ORIENTATION = 0x0112   # the EXIF orientation tag


# ---------------------------------------------------------------------------------- uint8 conversion
# ---------------------------------------------------------------------------------- image files
def image_files(paths: Sequence[PathLike]) -> List[Path]:
    """The image files named by `paths`: files as given, folders expanded to the image files inside them
    (IMAGE_SUFFIXES, sorted, hidden files skipped). Refuses an empty entry (it would mean the current
    folder), a missing path and a folder without images; reads no pixels."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]   # one path, not the characters of one
    files: List[Path] = []
    for entry in paths:
        text = os.fspath(entry)
        if not text.strip():
            raise ValueError("an empty entry among the image paths (a trailing comma?); name each file or folder")
        p = Path(text)
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{p}: a folder without image files (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no image file or folder at {p}")
    if not files:
        raise ValueError("no image paths given")
    return files


def _open(path: Path, resolution: Optional[int], notes: List[str]):
    """The decoded Pillow image of `path` (first frame, EXIF orientation applied); errors name the file."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    try:
        with warnings.catch_warnings():   # Pillow's bomb warning: the stricter budget below refuses such files
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path, formats=READ_FORMATS)
        with img:
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                notes.append(f"{path}: {frames} frames; read the first")
            declared = img.size
            if resolution and img.format in ("JPEG", "MPO") and min(img.size) >= 4 * resolution:
                img.draft(None, (2 * resolution, 2 * resolution))   # decode at 1/2, 1/4 or 1/8 scale
                if img.size != declared:
                    notes.append(f"{path}: decoded {declared[0]}x{declared[1]} at {img.size[0]}x{img.size[1]} "
                                 "(JPEG draft)")
            if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:   # from the header: nothing decoded yet
                raise CheckpointError(f"{path}: {declared[0]}x{declared[1]} pixels, more than the "
                                      f"{MAX_IMAGE_PIXELS:,} an image may have here; resize it first")
            img.load()
            orientation = img.getexif().get(ORIENTATION, 1)
            if orientation in range(2, 9):   # a new image: twice the photo in memory while it is made
                img = ImageOps.exif_transpose(img)
                notes.append(f"{path}: turned upright (EXIF orientation {orientation})")
            # no copy otherwise: load() has read the pixels, and leaving the `with` only closes the file
    except CheckpointError:
        raise
    except UnidentifiedImageError:
        raise CheckpointError(f"{path}: not an image file of the formats read here ({', '.join(READ_FORMATS)})") from None
    except Image.DecompressionBombError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt image file ({type(e).__name__}: {e})") from None
    if img.width == 0 or img.height == 0:
        raise CheckpointError(f"{path}: an image with no pixels ({img.width}x{img.height})")
    return img


def _rgb8(img, path: Path, background: Tuple[int, int, int], notes: List[str]):
    """An 8-bit image as Pillow RGB, transparency composited over `background`."""
    transparent = img.mode in ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)
    if img.mode == "CMYK":
        notes.append(f"{path}: CMYK converted to RGB with Pillow's formula (no colour profile applied)")
    if not transparent:
        return img if img.mode == "RGB" else img.convert("RGB")   # convert("RGB") of RGB would copy it
    rgba = img.convert("RGBA")
    lo, _ = rgba.getchannel("A").getextrema()
    if lo < 255:
        notes.append(f"{path}: transparent pixels composited over RGB {tuple(background)}")
    under = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(under, rgba).convert("RGB")


def _gray_float(img, path: Path, notes: List[str]) -> np.ndarray:
    """A 16-bit, 32-bit integer or float image as float32 [H, W] in [0, 1]."""
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        return np.asarray(img).astype(np.float32) / 65535
    if mode == "I":
        bits = {"PNG": 16}.get(img.format)
        if img.format == "TIFF":
            bits = int(np.max(img.tag_v2.get(258, (32,))))   # BitsPerSample
        if bits != 16:
            raise CheckpointError(f"{path}: a {bits or 32}-bit integer image has no agreed white level; save it "
                                  "with 8 or 16 bits per channel")
        a = np.asarray(img)
        if a.min() < 0 or a.max() > 65535:
            raise CheckpointError(f"{path}: 16-bit image with values in [{a.min()}, {a.max()}]")
        return a.astype(np.float32) / 65535
    if mode == "F":
        a = np.asarray(img).astype(np.float32)
        if not np.isfinite(a).all():
            raise CheckpointError(f"{path}: a float image with NaN or inf values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise CheckpointError(f"{path}: a float image with values in [{lo:.4g}, {hi:.4g}]; float images are read "
                                  "only as intensities in [0, 1]: rescale it, or save it with 8 or 16 bits")
        notes.append(f"{path}: float32 values read as intensities in [0, 1]")
        return a
    raise CheckpointError(f"{path}: image mode {mode!r} is not supported (8-bit L/P/RGB/RGBA/CMYK, 16-bit "
                          "grayscale or float grayscale in [0, 1] are)")


def _square(img, path: Path, resolution: Optional[int], notes: List[str]):
    """Center-crop to a square and resize (Lanczos) to `resolution`; None keeps the image as it is."""
    if resolution is None:
        return img
    w, h = img.size
    if w != h:
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        notes.append(f"{path}: center-cropped {w}x{h} to {s}x{s}")
    if img.size[0] != resolution:
        notes.append(f"{path}: resized {img.size[0]}x{img.size[1]} to {resolution}x{resolution}")
        img = img.resize((resolution, resolution), Image.LANCZOS)
    return img


def _check_background(background: Tuple[int, int, int]) -> None:
    if len(background) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in background):
        raise ValueError(f"background must be an RGB triple of ints in 0..255, got {background!r}")


def read_image(path: PathLike, resolution: Optional[int] = None,
               background: Tuple[int, int, int] = WHITE) -> Tuple[torch.Tensor, List[str]]:
    """One image file -> (float32 [3, H, W] in [-1, 1], notes).

    resolution: center-crop to a square and resize to resolution x resolution; None keeps the size.
    background: RGB 0..255 that transparent pixels are composited over.
    notes: what was done beyond a plain decode (rotation, alpha, CMYK, crop, resize, ...), one line each.
    See the module docstring for the modes read and those refused.
    """
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"resolution must be a positive int or None, got {resolution!r}")
    _check_background(background)
    path = Path(os.fspath(path))
    notes: List[str] = []
    img = _open(path, resolution, notes)
    if img.mode in EIGHT_BIT_MODES:
        rgb = _square(_rgb8(img, path, tuple(background), notes), path, resolution, notes)
        return from_uint8(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)), notes
    gray = _gray_float(img, path, notes)
    gray = np.asarray(_square(Image.fromarray(gray), path, resolution, notes), dtype=np.float32).clip(0, 1)
    x = torch.from_numpy(gray.copy()) * 2 - 1
    return x.expand(3, *x.shape).contiguous(), notes


def is_gray(photo: Image.Image) -> bool:
    """Whether an RGB photo is grayscale: its three channels equal at every pixel (an L-mode file read by
    `read_photo`, or a gray photo saved as RGB)."""
    a = np.asarray(photo.convert("RGB") if photo.mode != "RGB" else photo)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def is_gray_batch(images: torch.Tensor, tolerance: float = 1 / 255) -> torch.Tensor:
    """[N] bool: which images [N, 3, H, W] in [-1, 1] have three equal channels (to `tolerance`: the default
    is half an 8-bit level)."""
    return ((images - images.mean(1, keepdim=True)).abs().flatten(1).amax(1) <= tolerance)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """Images [..., 3, H, W] in [-1, 1] -> the same shape, each channel the ITU-R 601 luma (what Pillow's
    convert('L') computes): how an edit of a grayscale photo is shown and pasted back."""
    luma = 0.299 * images[..., 0:1, :, :] + 0.587 * images[..., 1:2, :, :] + 0.114 * images[..., 2:3, :, :]
    return luma.expand_as(images).contiguous()


def read_photo(path: PathLike, background: Tuple[int, int, int] = WHITE) -> Tuple[Image.Image, List[str]]:
    """One image file at its full size -> (Pillow RGB image, 8 bits per channel, notes).

    The photograph that face alignment and paste-back work on (`latentspaces.align`): decoded, oriented
    and refused exactly as by `read_image`, but kept as 8-bit RGB (no float copy; 16-bit and float
    grayscale are rounded to 8 bits, said in a note), neither cropped nor resized.
    """
    _check_background(background)
    path = Path(os.fspath(path))
    notes: List[str] = []
    img = _open(path, None, notes)
    if img.mode in EIGHT_BIT_MODES:
        return _rgb8(img, path, tuple(background), notes), notes
    gray = _gray_float(img, path, notes)
    notes.append(f"{path}: {img.mode} image rounded to 8 bits per channel")
    return Image.fromarray(np.rint(gray * 255).astype(np.uint8)).convert("RGB"), notes


def load_images(paths: Sequence[PathLike], resolution: int, verbose: bool = True,
                background: Tuple[int, int, int] = WHITE) -> torch.Tensor:
    """Image files and folders (see `image_files`) -> float32 [N, 3, resolution, resolution] in [-1, 1].

    Each file is read by `read_image` (square center crop, Lanczos resize); with `verbose` its notes are
    printed, one line each.
    """
    out = []
    for f in image_files(paths):
        x, notes = read_image(f, resolution, background)
        if verbose:
            for note in notes:
                print(note)
        out.append(x)
    return torch.stack(out)


def save_images(images: torch.Tensor, path: PathLike, nrow: int = 8) -> None:
    """Save [N, 3, H, W] in [-1, 1] as one PNG grid."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(to_uint8(images).float() / 255, tmp, nrow=nrow, padding=1, format="png")


# ---------------------------------------------------------------------------------- image batch files
def save_image_file(path: Path, images: torch.Tensor, **header: object) -> None:
    """Write images [N, 3, R, R] in [-1, 1] as uint8 (format latentspaces.images), atomically."""
    save_tensors(path, {"images": to_uint8(images)}, IMAGES_FORMAT, 1, **header)


def load_image_file(path: Path) -> torch.Tensor:
    """The uint8 images [N, 3, R, R] of a file written by `save_image_file` (or by earlier runs, headerless)."""
    tensors, _ = load_tensors(path)
    return tensors["images"]


__all__ = ["IMAGES_FORMAT", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "READ_FORMATS", "WHITE", "from_uint8", "image_files", "load_image_file", "load_images",
           "read_image", "read_photo", "save_image_file", "save_images", "to_uint8"]
