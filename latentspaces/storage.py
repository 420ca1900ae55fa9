"""The one storage layer: atomic writes and one safetensors header convention.

Every file the project saves goes through here:

- `atomic_path(path)`: write to a temporary file beside `path`, then rename; a killed process leaves
  the old file or the new one, never half of one. `atomic_write_text`, `atomic_torch_save` and
  `save_figure` (matplotlib figures) use it.
- `save_tensors(path, tensors, format, version, **header)`: one safetensors file whose header metadata
  is {"format": <name>, "version": "<int>", key: JSON of value, ...}, its keys sorted (equal contents,
  equal bytes). `read_header` / `load_tensors` check the format name and version and decode the JSON,
  raising `CheckpointError` with what the file is and what was expected. Reading never unpickles
  anything.
- `load_module(path, build, what)`: a network read from a file that may be broken or hostile: its
  meta-device build compared with the file's tensor table, every tensor checked by the rules of
  `latentspaces.file_rules`, and only then allocated.

Format names in use (see each owner's docstring): latentspaces.generator, latentspaces.discriminator,
latentspaces.encoder, latentspaces.directions, latentspaces.code, latentspaces.pn_stats, latentspaces.mean_z,
latentspaces.images.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from .errors import CheckpointError
from .fingerprints import digest, file_sha256
from .file_rules import FLOAT_DTYPES, check_tensor, show

PathLike = Union[str, os.PathLike]


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file 0600; a saved file gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
DATA_DIGEST = "data_sha256"   # header key: the sha256 of a file's tensor bytes (`save_tensors` writes, `read_tensors` checks)


def save_tensors(path: PathLike, tensors: Dict[str, torch.Tensor], format: str, version: int = 1, /,
                 **header: object) -> None:
    """Write `tensors` (moved to CPU, made contiguous) and a header {format, version, **JSON(header)}, with the
    sha256 of the tensor bytes (DATA_DIGEST), which `read_tensors` checks: safetensors has no checksum of its own.

    The header's keys are sorted, so equal tensors and header always give the same bytes.
    """
    meta = {"format": format, "version": str(int(version))}
    for key, value in header.items():
        if key in meta or key == DATA_DIGEST:
            raise ValueError(f"header key {key!r} is reserved")
        meta[key] = json.dumps(value, sort_keys=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = safetensors_bytes(state, metadata=meta)
    # safetensors writes the header's metadata in a hash map's order, which changes from one save to the
    # next: equal tensors and header gave files with different bytes, and the run folders record files'
    # sha256. Its keys are sorted here; no value changes (data offsets count from the end of the header).
    n = int.from_bytes(blob[:8], "little")
    layout = json.loads(blob[8 : 8 + n])
    layout.setdefault("__metadata__", {})[DATA_DIGEST] = digest(memoryview(blob)[8 + n :])
    table = json.dumps(layout, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    table += b" " * (-len(table) % 8)   # the data stays 8-byte aligned, as safetensors pads it
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(len(table).to_bytes(8, "little"))
        f.write(table)
        f.write(memoryview(blob)[8 + n :])


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
        if key in out or key == DATA_DIGEST:   # the digest is the storage layer's, checked by read_tensors
            continue
        try:
            out[key] = json.loads(value)
        except (ValueError, RecursionError) as e:  # RecursionError: JSON nested thousands of levels deep
            raise CheckpointError(f"{path}: header field {key!r} is not valid JSON ({type(e).__name__}: "
                                  f"{str(e)[:200]})") from None
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


def tensor_shapes(path: PathLike) -> Dict[str, Tuple[Tuple[int, ...], str]]:
    """{name: (shape, safetensors dtype name such as 'F32')} of a safetensors file, without reading any data."""
    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype())) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: the tensor table cannot be read ({type(e).__name__}: {e}); the file may be "
                              "truncated or corrupt") from e


def check_data_digest(path: PathLike) -> None:
    """CheckpointError unless the tensor bytes of a file `save_tensors` wrote match the sha256 in its header
    (a file without one, written before the digest or by someone else, passes)."""
    path = os.fspath(path)
    recorded = read_raw_header(path).get(DATA_DIGEST)
    if recorded is None:
        return
    with open(path, "rb") as f:
        start = 8 + int.from_bytes(f.read(8), "little")   # the tensor bytes follow the 8-byte length and the header
    if file_sha256(path, start) != recorded:
        raise CheckpointError(f"{path}: its tensor bytes do not match the sha256 recorded when it was written; the "
                              "file was damaged since (a flipped byte loads as a changed weight): restore or remake it")


def read_tensors(path: PathLike, device: Union[str, torch.device] = "cpu") -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file, header unread (for readers that check the header themselves), their bytes
    first checked against the file's recorded digest (`check_data_digest`)."""
    path = os.fspath(path)
    check_data_digest(path)
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: the tensors cannot be read ({type(e).__name__}: {e}); the file may be "
                              "truncated or corrupt") from e


# ---------------------------------------------------------------------------------- checked networks
def load_module(path: PathLike, build: Callable[[], torch.nn.Module], what: str) -> torch.nn.Module:
    """A network built by `build()` with the weights of the safetensors file `path`, checked first.

    `build` is run on the meta device (nothing allocated) and its state dict compared with the file's
    tensor table (names, shapes); then every tensor is checked (`check_tensor`) and only then is the
    network built for real and the weights loaded (cast to its dtypes). CheckpointError names the file
    and the first mismatch. Call `config_is_plausible` (`latentspaces.file_rules`) on the header config
    before.
    """
    path = os.fspath(path)
    try:
        with torch.device("meta"):
            shell = build()
    except RecursionError:
        raise CheckpointError(f"{path}: the {what} config is nested too deeply") from None
    except Exception as e:  # whatever the constructor raises on values from a file: the config is invalid
        raise CheckpointError(f"{path}: invalid {what} config in the header ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    own = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    kinds = {k: FLOAT_DTYPES if v.is_floating_point() else (v.dtype,) for k, v in shell.state_dict().items()}
    table = {k: shape for k, (shape, _) in tensor_shapes(path).items()}
    missing, unexpected = sorted(set(own) - set(table)), sorted(set(table) - set(own))
    wrong = sorted(k for k in own if k in table and table[k] != own[k])
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path}: weights do not match a {what} with its stored config (missing {missing[:5]}, "
                              f"unexpected {[show(k) for k in unexpected[:5]]}, wrong shapes {wrong[:5]})")
    state = {k: check_tensor(k, v, own[k], path, dtypes=kinds[k]) for k, v in read_tensors(path).items()}
    module = build()
    dtypes = {k: v.dtype for k, v in module.state_dict().items()}
    module.load_state_dict({k: v.to(dtypes[k]) for k, v in state.items()})
    return module


__all__ = ["DATA_DIGEST", "PathLike", "atomic_path", "check_data_digest", "atomic_torch_save", "atomic_write_text", "load_module", "load_tensors",
           "read_header", "read_raw_header", "read_tensors", "save_figure", "save_tensors", "tensor_shapes"]
