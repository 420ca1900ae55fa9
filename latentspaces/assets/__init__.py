"""The one registry of assets shipped inside the package: the embedded default model and its companions.

Everything here is produced by the project's own code (the trainers and tools under experiments/) and
stored in the project's own formats; nothing is downloaded. `ASSETS` maps a public name to its file,
its kind and the command that makes it; the loaders of each kind take these names:

    ls.load_generator("default")                      # kind 'generator'
    encoders.load_encoder("default-f")                # kinds 'encoder' and 'head'
    latentspaces.discriminator.load_default_discriminator()
    latentspaces.assets.heldout_targets()             # kind 'images'

This module sits at the bottom of the library: it knows paths, not formats (beyond the uint8 target
images, read through the storage layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

from ..images import from_uint8
from ..storage import load_tensors

ASSET_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Asset:
    file: str        # file name inside latentspaces/assets
    kind: str        # 'generator', 'discriminator', 'encoder', 'head' or 'images'
    made_by: str     # the command that produces it


ASSETS: Dict[str, Asset] = {
    "default": Asset("default_generator.safetensors", "generator", "python -m experiments.training.train_stylegan2"),
    "default-discriminator": Asset("default_discriminator.safetensors", "discriminator",
                                   "python -m experiments.training.train_stylegan2 (exported with the generator)"),
    "default-f": Asset("default_f_encoder.safetensors", "encoder", "python -m experiments.training.train_f_encoder"),
    "default-wplus": Asset("default_wplus_encoder.safetensors", "encoder",
                           "python -m experiments.training.train_wplus_encoder"),
    "default-sdic": Asset("default_sdic.safetensors", "head", "python -m experiments.training.train_sdic"),
    "default-hfgi": Asset("default_hfgi.safetensors", "head", "python -m experiments.training.train_hfgi"),
    "default-gradstyle": Asset("default_gradstyle.safetensors", "head",
                               "python -m experiments.training.train_gradstyle (then --init-from its checkpoint "
                               "with --lambda-edit-consistency 1; encoders/gradstyle.py)"),
    "default-reganie": Asset("default_reganie.safetensors", "head", "python -m experiments.training.train_reganie"),
    "heldout-targets": Asset("heldout_targets.safetensors", "images", "python -m experiments.tools.make_heldout_targets"),
}


def names(kind: Optional[str] = None) -> list:
    """Public names of the shipped assets (of one kind), sorted."""
    return sorted(n for n, a in ASSETS.items() if kind is None or a.kind == kind)


# The generator names `ls.load_generator` accepts (kept under its earlier name).
NAMES = {n: ASSETS[n].file for n in names("generator")}


def installed(name: str) -> bool:
    """Whether the shipped asset `name` is on disk (a registered name whose file exists)."""
    return name in ASSETS and (ASSET_DIR / ASSETS[name].file).is_file()


def asset_path(name: str, kind: Optional[str] = None) -> Path:
    """Path of a shipped asset by public name (checked against `kind` when given).

    KeyError for an unknown name, FileNotFoundError saying where it was looked for and how to make it.
    """
    if name not in ASSETS or (kind is not None and ASSETS[name].kind != kind):
        raise KeyError(f"unknown {kind or 'asset'} name {name!r}; shipped: {names(kind)}")
    asset = ASSETS[name]
    path = ASSET_DIR / asset.file
    if not path.is_file():
        raise FileNotFoundError(f"asset {name!r} is not installed: expected {path}. It is made by `{asset.made_by}`; "
                                "until it is shipped, pass the path of a file you made (or own) instead.")
    return path


def heldout_targets(n: Optional[int] = None) -> torch.Tensor:
    """The shipped held-out faces as float32 [N, 3, 64, 64] in [-1, 1] (all 64, or the first n)."""
    tensors, _ = load_tensors(asset_path("heldout-targets"))
    x = from_uint8(tensors["images"])
    return x if n is None else x[:n]


def astronaut_face(size: int = 64) -> torch.Tensor:
    """A real photograph's face crop (scikit-image's astronaut, Eileen Collins), [1, 3, size, size] in [-1, 1].

    The out-of-domain target: a real photo for a generator trained on DCGAN faces.
    """
    import torch.nn.functional as F
    from skimage import data  # scikit-image is imported only when the photo is asked for

    img = from_uint8(torch.from_numpy(data.astronaut()[20:220, 140:340].copy()).permute(2, 0, 1)[None])
    return F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)


__all__ = ["ASSETS", "ASSET_DIR", "Asset", "NAMES", "asset_path", "astronaut_face", "heldout_targets", "names"]
