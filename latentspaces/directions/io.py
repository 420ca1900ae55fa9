"""Direction files: the project's own format, and the direction files users already have (e4e).

Own format: one safetensors file written through the storage layer (`latentspaces.storage`), tensors
`direction_{i}`, header {"format": "latentspaces.directions", "version": "1", "directions": JSON list of
{kind, layers, name, method, meta}} (files from before the version field are read too).

Read as well (`latentspaces.torch_files.load_torch_file`: weights-only, mapped to CPU so files saved on a CUDA
device load anywhere, sized before anything is inflated, stride-0 views refused):
- a [D] / [1, D] tensor (e4e's InterFaceGAN boundaries, e.g. age.pt): one direction;
- a [L, D] tensor (per-layer W+ direction, e.g. 18x512): one per-layer direction;
- a GANSpace PCA dict with 'comp' [K, (1,) D], 'std' [K] (and 'mean'), as e4e's ffhq_pca.pt: K
  directions comp_k * std_k, so alpha is measured in standard deviations, as e4e edits.
"""

from __future__ import annotations

import json
import os
from typing import Callable, List, Optional, Sequence, Union

import torch

from ..checkpoints import sniff_format
from ..errors import CheckpointError
from ..file_rules import show
from ..fingerprints import check_sidecar
from ..storage import load_tensors, read_raw_header, save_tensors
from ..torch_files import load_torch_file
from .direction import Direction

FORMAT = "latentspaces.directions"


def save_directions(path: Union[str, os.PathLike], directions: Sequence[Direction]) -> None:
    """Write directions (float32 vectors and their metadata) to one file, atomically."""
    tensors = {f"direction_{i}": d.vector.detach().float() for i, d in enumerate(directions)}
    meta = [dict(kind=d.kind, layers=d.layers, name=d.name, method=d.method, meta=d.meta) for d in directions]
    save_tensors(path, tensors, FORMAT, 1, directions=meta)


def load_directions(path: Union[str, os.PathLike], kind: Optional[str] = None,
                    layers: Optional[Sequence[int]] = None) -> List[Direction]:
    """Directions from a file. `kind` ('w' by default) and `layers` describe foreign files, which carry no metadata.

    Every direction is checked as it is built (a [D] or [L, D] float tensor, finite, rows matching its
    layers): a file holding NaN or inf, or a tensor of another shape, raises CheckpointError naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no direction file at {path}")
    check_sidecar(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        raw = read_raw_header(path)
        if raw.get("format") != FORMAT:
            raise CheckpointError(f"{path}: a safetensors file, but not a latentspaces direction file (format="
                                  f"{raw.get('format')!r}, expected {FORMAT!r})")
        tensors, header = load_tensors(path, FORMAT if "version" in raw else None)
        if "directions" not in raw:
            raise CheckpointError(f"{path}: a direction file without its 'directions' header (the metadata of each "
                                  "direction: kind, layers, name); it cannot be read without it")
        metas = header["directions"] if "version" in raw else _json(path, raw["directions"])
        if not isinstance(metas, list) or not metas or not all(isinstance(m, dict) for m in metas):
            raise CheckpointError(f"{path}: the 'directions' header must be a non-empty list of objects "
                                  f"(kind, layers, name, method, meta), got {show(metas)}")
        try:
            return [_checked(path, f"direction {i}", lambda: Direction(tensors[f"direction_{i}"], **m))
                    for i, m in enumerate(metas)]
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: directions and their metadata disagree ({e})") from e
    if fmt not in ("torch-zip", "torch-legacy"):
        raise CheckpointError(f"{path}: direction files are latentspaces .safetensors or torch .pt files")
    obj = load_torch_file(path, "direction file", hint="Direction .pt files hold a tensor or a GANSpace dict.")
    kind = kind or "w"
    name = os.path.splitext(os.path.basename(path))[0]
    if isinstance(obj, torch.Tensor):
        if not obj.dtype.is_floating_point:
            raise CheckpointError(f"{path}: the direction tensor has dtype {obj.dtype}; expected a floating-point tensor")
        v = obj.float()
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        if v.ndim not in (1, 2):
            raise CheckpointError(f"{path}: a direction tensor must be [D], [1, D] or [L, D], got {tuple(obj.shape)}")
        return [_checked(path, "the direction", lambda: Direction(v, kind, layers=layers, name=name, method="file"))]
    if isinstance(obj, dict) and isinstance(obj.get("comp"), torch.Tensor) and isinstance(obj.get("std"), torch.Tensor):
        if not (obj["comp"].dtype.is_floating_point and obj["std"].dtype.is_floating_point):
            raise CheckpointError(f"{path}: GANSpace 'comp' and 'std' must be floating-point tensors, got "
                                  f"{obj['comp'].dtype} and {obj['std'].dtype}")
        if obj["comp"].ndim < 2:
            raise CheckpointError(f"{path}: GANSpace dict 'comp' must be [K, (1,) D], got {tuple(obj['comp'].shape)}")
        comp = obj["comp"].float().reshape(obj["comp"].shape[0], -1)
        std = obj["std"].float().reshape(-1)
        if std.shape[0] != comp.shape[0]:
            raise CheckpointError(f"{path}: GANSpace dict has {comp.shape[0]} components but {std.shape[0]} stds")
        return [_checked(path, f"component {k}",
                         lambda: Direction(comp[k] * std[k], kind, layers=layers, name=f"{name}_{k}", method="ganspace",
                                           meta={"std": float(std[k]), "scaled_by_std": True}))
                for k in range(comp.shape[0])]
    raise CheckpointError(f"{path}: unrecognised direction file (a {type(obj).__name__}); expected a tensor "
                          "[D]/[1, D]/[L, D] or a GANSpace dict with 'comp' and 'std'")


def _json(path: str, text: str) -> object:
    """A JSON header field of a file from before the version field; CheckpointError naming the file when broken."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: the 'directions' header is not valid JSON ({type(e).__name__})") from None


def _checked(path: str, which: str, build: Callable[[], Direction]) -> Direction:
    """build(), with the ValueError of a bad vector (NaN, wrong shape or dtype) as a CheckpointError naming the file."""
    try:
        return build()
    except ValueError as e:
        raise CheckpointError(f"{path}: {which}: {e}") from e
