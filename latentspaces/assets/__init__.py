"""Assets shipped inside the package (the embedded default model and its companions).

Everything here is produced by the project's own code (see experiments/) and stored in the
project's own formats; nothing is downloaded. `NAMES` maps a public name to its file.
"""

from __future__ import annotations

from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parent

NAMES = {
    "default": "default_generator.safetensors",  # 64x64 face StyleGAN2 trained by experiments/train_stylegan2.py
}
DISCRIMINATOR = "default_discriminator.safetensors"  # the default G's discriminator (float16), for D features
HELDOUT_TARGETS = "heldout_targets.safetensors"   # 64 held-out DCGAN faces (experiments/make_heldout_targets.py)


def asset_path(name: str) -> Path:
    """Path of a shipped asset by public name; FileNotFoundError saying what is missing and what to use."""
    if name not in NAMES:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(NAMES)}")
    path = ASSET_DIR / NAMES[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"asset {name!r} is not installed: expected {path}. It is produced by the project's trainer "
            "(python -m experiments.train_stylegan2); until it is shipped, pass a checkpoint path "
            "(rosinality .pt, NVlabs .pkl or latentspaces .safetensors) to ls.load_generator instead."
        )
    return path


def load_default_generator(name: str = "default"):
    """The embedded generator `name`, in eval mode, on CPU."""
    from ..checkpoints.native import load_native

    return load_native(str(asset_path(name)))


def heldout_targets(n: int | None = None):
    """The shipped held-out faces as float32 [N, 3, 64, 64] in [-1, 1] (all 64, or the first n)."""
    from safetensors.torch import load_file

    path = ASSET_DIR / HELDOUT_TARGETS
    if not path.is_file():
        raise FileNotFoundError(f"held-out targets not installed: expected {path} "
                                "(made by python -m experiments.make_heldout_targets)")
    u8 = load_file(str(path))["images"]
    x = u8.float() / 127.5 - 1
    return x if n is None else x[:n]


def astronaut_face(size: int = 64):
    """A real photograph's face crop (scikit-image's astronaut, Eileen Collins), [1, 3, size, size] in [-1, 1].

    The out-of-domain target: a real photo for a generator trained on DCGAN faces.
    """
    import torch
    import torch.nn.functional as F
    from skimage import data

    img = torch.from_numpy(data.astronaut()[20:220, 140:340].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)


def load_default_discriminator():
    """The trained discriminator of the default generator (its features are the default perceptual distance)."""
    from ..discriminator import load_discriminator

    path = ASSET_DIR / DISCRIMINATOR
    if not path.is_file():
        raise FileNotFoundError(f"default discriminator not installed: expected {path} "
                                "(exported by python -m experiments.train_stylegan2)")
    return load_discriminator(path)
