"""The one storage layer: atomic writes, one safetensors header convention, uint8 image conversion.

Every file the project saves goes through here:

- `atomic_path(path)`: write to a temporary file beside `path`, then rename; a killed process leaves
  the old file or the new one, never half of one. `atomic_write_text`, `atomic_torch_save` and
  `save_figure` (matplotlib figures) use it.
- `save_tensors(path, tensors, format, version, **header)`: one safetensors file whose header metadata
  is {"format": <name>, "version": "<int>", key: JSON of value, ...}. `read_header` / `load_tensors`
  check the format name and version and decode the JSON, raising `CheckpointError` with what the file
  is and what was expected. Reading never unpickles anything.
- `to_uint8` / `from_uint8`: images in [-1, 1] <-> uint8 [0, 255], the one pair of conversions.

Format names in use (see each owner's docstring): latentspaces.generator, latentspaces.discriminator,
latentspaces.encoder, latentspaces.directions, latentspaces.code, latentspaces.pn_stats,
latentspaces.images.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import CheckpointError

PathLike = Union[str, os.PathLike]
IMAGES_FORMAT = "latentspaces.images"  # uint8 image batches: tensor `images` [N, 3, R, R] (targets, method outputs)


# ---------------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path in the folder of `path`; on success rename it to `path`, else remove it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def atomic_torch_save(obj: object, path: PathLike) -> None:
    """torch.save of the project's own state dicts (tensors and plain values; read back with
    `torch.load(weights_only=True)`), atomically: training and inversion checkpoints."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_figure(figure: object, path: PathLike, **savefig_kwargs: object) -> None:
    """A matplotlib figure to `path` atomically, in the format its suffix names (png, pdf, ...)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, **savefig_kwargs)


# ---------------------------------------------------------------------------------- safetensors + header
def save_tensors(path: PathLike, tensors: Dict[str, torch.Tensor], format: str, version: int = 1, /,
                 **header: object) -> None:
    """Write `tensors` (moved to CPU, made contiguous) and a header {format, version, **JSON(header)}."""
    meta = {"format": format, "version": str(int(version))}
    for key, value in header.items():
        if key in meta:
            raise ValueError(f"header key {key!r} is reserved")
        meta[key] = json.dumps(value, sort_keys=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata=meta)


def read_raw_header(path: PathLike) -> Dict[str, str]:
    """The undecoded header metadata of a safetensors file ({} when it has none)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no file at {path}")
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); the file may "
                              "be truncated, corrupt or of another kind") from e


def _decode(path: str, raw: Dict[str, str]) -> Dict[str, object]:
    if "version" not in raw:  # written before this convention (or by someone else): plain strings
        return dict(raw)
    out: Dict[str, object] = {"format": raw.get("format"), "version": raw.get("version")}
    for key, value in raw.items():
        if key in out:
            continue
        try:
            out[key] = json.loads(value)
        except ValueError as e:
            raise CheckpointError(f"{path}: header field {key!r} is not valid JSON ({e})") from e
    return out


def read_header(path: PathLike, format: Optional[str] = None, versions: Sequence[int] = (1,)) -> Dict[str, object]:
    """The decoded header of a file written by `save_tensors`; with `format`, checks its name and version."""
    path = os.fspath(path)
    raw = read_raw_header(path)
    if format is not None:
        if raw.get("format") != format:
            raise CheckpointError(f"{path}: a safetensors file, but not a {format} file (header format="
                                  f"{raw.get('format')!r}, expected {format!r})")
        if raw.get("version") not in {str(v) for v in versions}:
            raise CheckpointError(f"{path}: {format} version {raw.get('version')!r}; this library reads "
                                  f"version{'s' if len(versions) > 1 else ''} {', '.join(map(str, versions))}")
    return _decode(path, raw)


def load_tensors(path: PathLike, format: Optional[str] = None, versions: Sequence[int] = (1,),
                 device: Union[str, torch.device] = "cpu") -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:
    """(tensors, decoded header) of a file written by `save_tensors` (format and version checked)."""
    header = read_header(path, format, versions)
    return read_tensors(path, device), header


def read_tensors(path: PathLike, device: Union[str, torch.device] = "cpu") -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file, header unread (for readers that check the header themselves)."""
    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: the tensors cannot be read ({type(e).__name__}: {e}); the file may be "
                              "truncated or corrupt") from e


# ---------------------------------------------------------------------------------- images
def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (any shape) -> uint8 in [0, 255] on the CPU: clamp, scale by 127.5, round."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous()


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1] (x / 127.5 - 1), on the device of `x`."""
    if x.dtype != torch.uint8:
        raise TypeError(f"from_uint8 expects a uint8 tensor, got {x.dtype}")
    return x.float() / 127.5 - 1


__all__ = ["IMAGES_FORMAT", "atomic_path", "atomic_torch_save", "atomic_write_text", "from_uint8", "load_tensors", "read_header",
           "read_raw_header", "read_tensors", "save_figure", "save_tensors", "to_uint8"]
