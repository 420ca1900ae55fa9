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

from ..fingerprints import check_sha256
from ..images import from_uint8
from ..storage import load_tensors, tensor_shapes

ASSET_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Asset:
    file: str        # file name inside latentspaces/assets
    kind: str        # 'generator', 'discriminator', 'encoder', 'head' or 'images'
    made_by: str     # the command that produces it
    sha256: str = ""  # hex digest of the file as shipped; checked on first use (`asset_path`)


# The shipped names, one constant each: code spells a shipped asset by these, never as a string of its own.
DEFAULT_GENERATOR = "default"
DEFAULT_DISCRIMINATOR = "default-discriminator"
DEFAULT_F_ENCODER = "default-f"
DEFAULT_WPLUS_ENCODER = "default-wplus"
HELDOUT_TARGETS = "heldout-targets"


def default_head(head: str) -> str:
    """The shipped network of compensation head `head` ('sdic' -> 'default-sdic')."""
    return f"default-{head}"


ASSETS: Dict[str, Asset] = {
    DEFAULT_GENERATOR: Asset("default_generator.safetensors", "generator", "latentspaces train stylegan2",
                             sha256="ed669f8a0fd96ef1c81a424a400bef18bd815d8e5fb6b7c625afd17a2aab0f3f"),
    DEFAULT_DISCRIMINATOR: Asset("default_discriminator.safetensors", "discriminator",
                                 "latentspaces train stylegan2 (exported with the generator)",
                                 sha256="4a4345a241dd7be350e1e287413ebafd7823477c182ca2aa78ae575fd2769ded"),
    DEFAULT_F_ENCODER: Asset("default_f_encoder.safetensors", "encoder", "latentspaces train f-encoder",
                             sha256="ce7a58350a593883936301753e3b65d36568047ea489f432180b4a45dc377518"),
    DEFAULT_WPLUS_ENCODER: Asset("default_wplus_encoder.safetensors", "encoder", "latentspaces train wplus-encoder",
                                 sha256="97a457288e2b7874ed3548eaca7a5ecb15df364f3e8461591ebf9e0ea602e777"),
    default_head("sdic"): Asset("default_sdic.safetensors", "head", "latentspaces train sdic",
                                sha256="eb68e97dc1428946d8b177b24eb3bdf169d352ec68dca6069a6ef927da00c650"),
    default_head("hfgi"): Asset("default_hfgi.safetensors", "head", "latentspaces train hfgi",
                                sha256="824e5fd80fa4b5daa5aa844c2922157ede6429d6098c4a809e20140bfa08dc76"),
    default_head("gradstyle"): Asset("default_gradstyle.safetensors", "head",
                                     "latentspaces train gradstyle (then --init-from its checkpoint with "
                                     "--lambda-edit-consistency 1; encoders/gradstyle.py)",
                                     sha256="440114fd37d87577a1b3fceba71b2f35d0e53a7810e32109617d40fe82d93540"),
    default_head("reganie"): Asset("default_reganie.safetensors", "head", "latentspaces train reganie",
                                   sha256="f0ddef8c6513b9d0db818cc755b350722e908c8c25f0e20896b49684731c4093"),
    HELDOUT_TARGETS: Asset("heldout_targets.safetensors", "images", "python -m experiments.tools.make_heldout_targets",
                           sha256="90d47aff41eb1bb72d11bc43d8b67a3a2d2ac1a5d4693cdd812510515bc65044"),
}


def names(kind: Optional[str] = None) -> list:
    """Public names of the shipped assets (of one kind), sorted."""
    return sorted(n for n, a in ASSETS.items() if kind is None or a.kind == kind)


def installed(name: str) -> bool:
    """Whether the shipped asset `name` is on disk (a registered name whose file exists)."""
    return name in ASSETS and (ASSET_DIR / ASSETS[name].file).is_file()


def asset_path(name: str, kind: Optional[str] = None) -> Path:
    """Path of a shipped asset by public name (checked against `kind` when given), its bytes checked against
    the sha256 recorded here (once per process and file version).

    KeyError for an unknown name, FileNotFoundError saying where it was looked for and how to make it,
    CheckpointError when the file's bytes changed (a damaged install, or a file remade without recording it).
    """
    if name not in ASSETS or (kind is not None and ASSETS[name].kind != kind):
        raise KeyError(f"unknown {kind or 'asset'} name {name!r}; shipped: {names(kind)}")
    asset = ASSETS[name]
    path = ASSET_DIR / asset.file
    if not path.is_file():
        raise FileNotFoundError(f"asset {name!r} is not installed: expected {path}. It is made by `{asset.made_by}`; "
                                "until it is shipped, pass the path of a file you made (or own) instead.")
    if asset.sha256:
        check_sha256(path, asset.sha256, f"the shipped asset {name!r}",
                     f"reinstall the package, or if you remade it with `{asset.made_by}`, record its sha256 in "
                     "latentspaces.assets.ASSETS")
    return path


def heldout_count() -> int:
    """How many held-out targets are shipped (read from the file's tensor table, no pixels decoded)."""
    return tensor_shapes(asset_path(HELDOUT_TARGETS))["images"][0][0]


def heldout_targets(n: Optional[int] = None) -> torch.Tensor:
    """The shipped held-out faces as float32 [N, 3, 64, 64] in [-1, 1] (all 64, or the first n)."""
    tensors, _ = load_tensors(asset_path(HELDOUT_TARGETS))
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


__all__ = ["ASSETS", "ASSET_DIR", "Asset", "DEFAULT_DISCRIMINATOR", "DEFAULT_F_ENCODER", "DEFAULT_GENERATOR",
           "DEFAULT_WPLUS_ENCODER", "HELDOUT_TARGETS", "asset_path", "astronaut_face", "default_head", "heldout_count",
           "heldout_targets", "installed", "names"]
