"""Assets shipped inside the package (the embedded default model and its companions).

Everything here is produced by the project's own code (see experiments/) and stored in the
project's own formats; nothing is downloaded. `NAMES` maps a public name to its file.
"""

from __future__ import annotations

from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parent

NAMES = {
    "default": "default_generator.safetensors",  # 64x64 face StyleGAN2 trained by experiments/train_generator.py
}


def asset_path(name: str) -> Path:
    """Path of a shipped asset by public name; FileNotFoundError saying what is missing and what to use."""
    if name not in NAMES:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(NAMES)}")
    path = ASSET_DIR / NAMES[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"asset {name!r} is not installed: expected {path}. It is produced by the project's trainer "
            "(python -m experiments.train_generator); until it is shipped, pass a checkpoint path "
            "(rosinality .pt, NVlabs .pkl or latentspaces .safetensors) to ls.load_generator instead."
        )
    return path


def load_default_generator(name: str = "default"):
    """The embedded generator `name`, in eval mode, on CPU."""
    from ..checkpoints.native import load_native

    return load_native(str(asset_path(name)))
