"""Direction files: the project's own format, and the direction files users already have (e4e).

Own format: one safetensors file, tensors `direction_{i}`, header metadata
{"format": "latentspaces.directions", "directions": JSON list of {kind, layers, name, method, meta}}.

Read as well (weights-only torch.load, mapped to CPU, so files saved on a CUDA device load anywhere):
- a [D] / [1, D] tensor (e4e's InterFaceGAN boundaries, e.g. age.pt): one direction;
- a [L, D] tensor (per-layer W+ direction, e.g. 18x512): one per-layer direction;
- a GANSpace PCA dict with 'comp' [K, (1,) D], 'std' [K] (and 'mean'), as e4e's ffhq_pca.pt: K
  directions comp_k * std_k, so alpha is measured in standard deviations, as e4e edits.
"""

from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..checkpoints import sniff_format
from ..checkpoints.errors import CheckpointError
from .direction import Direction

FORMAT = "latentspaces.directions"


def save_directions(path: Union[str, os.PathLike], directions: Sequence[Direction]) -> None:
    tensors = {f"direction_{i}": d.vector.detach().cpu().float().contiguous() for i, d in enumerate(directions)}
    meta = [dict(kind=d.kind, layers=d.layers, name=d.name, method=d.method, meta=d.meta) for d in directions]
    save_file(tensors, os.fspath(path), metadata={"format": FORMAT, "directions": json.dumps(meta)})


def load_directions(path: Union[str, os.PathLike], kind: Optional[str] = None,
                    layers: Optional[Sequence[int]] = None) -> List[Direction]:
    """Directions from a file. `kind` ('w' by default) and `layers` describe foreign files, which carry no metadata."""
    path = os.fspath(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: a safetensors file, but not a latentspaces direction file")
            metas = json.loads(header["directions"])
            return [Direction(f.get_tensor(f"direction_{i}"), **m) for i, m in enumerate(metas)]
    if fmt not in ("torch-zip", "torch-legacy"):
        raise CheckpointError(f"{path}: direction files are latentspaces .safetensors or torch .pt files")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not readable with torch.load(weights_only=True): {e}") from e
    kind = kind or "w"
    name = os.path.splitext(os.path.basename(path))[0]
    if isinstance(obj, torch.Tensor):
        v = obj.float()
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        if v.ndim not in (1, 2):
            raise CheckpointError(f"{path}: a direction tensor must be [D], [1, D] or [L, D], got {tuple(obj.shape)}")
        return [Direction(v, kind, layers=layers, name=name, method="file")]
    if isinstance(obj, dict) and "comp" in obj and "std" in obj:
        comp = obj["comp"].float().reshape(obj["comp"].shape[0], -1)
        std = obj["std"].float().reshape(-1)
        if std.shape[0] != comp.shape[0]:
            raise CheckpointError(f"{path}: GANSpace dict has {comp.shape[0]} components but {std.shape[0]} stds")
        return [Direction(comp[k] * std[k], kind, layers=layers, name=f"{name}_{k}", method="ganspace",
                          meta={"std": float(std[k]), "scaled_by_std": True}) for k in range(comp.shape[0])]
    raise CheckpointError(f"{path}: unrecognised direction file (a {type(obj).__name__}); expected a tensor "
                          "[D]/[1, D]/[L, D] or a GANSpace dict with 'comp' and 'std'")
