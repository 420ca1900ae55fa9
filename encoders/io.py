"""The project's encoder format, and loading encoders by name or path.

One safetensors file per encoder. Header metadata: {"format": "latentspaces.encoder", "version": "1",
"class": <class name>, "config": <JSON of the encoder's `config`>, "meta": <JSON, free-form: the
generator it was trained for, training steps, ...>}. Tensors: the state dict, stored in float16 or
float32 (BatchNorm step counters stay integer). Reading never unpickles anything.

Shipped encoders for the embedded default generator are loaded by name:
    enc = load_encoder("default-f")       # FEncoder for G's F layer b8.conv0
    enc = load_encoder("default-wplus")   # e4e-style W+ encoder
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "latentspaces.encoder"
VERSION = "1"

# public name -> (file in latentspaces/assets, the command that trains it)
ENCODER_NAMES: Dict[str, tuple] = {
    "default-f": ("default_f_encoder.safetensors", "python -m experiments.train_f_encoder"),
    "default-wplus": ("default_wplus_encoder.safetensors", "python -m experiments.train_wplus_encoder"),
    "default-sdic": ("default_sdic.safetensors", "python -m experiments.train_sdic"),
}


def _classes() -> dict:
    from .f_encoder import FEncoder
    from .sdic import SDIC
    from .wplus_encoder import WPlusEncoder

    return {"FEncoder": FEncoder, "WPlusEncoder": WPlusEncoder, "SDIC": SDIC}


def save_encoder(encoder: torch.nn.Module, path: Union[str, os.PathLike], meta: dict | None = None,
                 half: bool = False) -> None:
    """Write `encoder` (config + weights; float16 weights when half=True) to `path`."""
    state = {}
    for k, v in encoder.state_dict().items():
        v = v.detach().to("cpu")
        if half and v.is_floating_point():
            v = v.to(torch.float16)
        state[k] = v.contiguous()
    header = {"format": FORMAT, "version": VERSION, "class": type(encoder).__name__,
              "config": json.dumps(encoder.config, sort_keys=True), "meta": json.dumps(meta or {}, sort_keys=True)}
    tmp = os.fspath(path) + ".tmp"
    save_file(state, tmp, metadata=header)
    os.replace(tmp, os.fspath(path))


def encoder_path(name: str) -> Path:
    """File of a shipped encoder; FileNotFoundError saying where it was looked for and how to make it."""
    from latentspaces.assets import ASSET_DIR

    if name not in ENCODER_NAMES:
        raise KeyError(f"unknown encoder name {name!r}; shipped encoders: {sorted(ENCODER_NAMES)} "
                       "(or pass the path of a file written by encoders.save_encoder)")
    file, command = ENCODER_NAMES[name]
    path = ASSET_DIR / file
    if not path.is_file():
        raise FileNotFoundError(f"encoder {name!r} is not installed: expected {path}. Train it with `{command}` "
                                "and load the exported file by path, or initialise HybridInverter with init='mean'.")
    return path


def read_encoder_meta(path: Union[str, os.PathLike]) -> dict:
    """The header of an encoder file: {'class', 'config' (dict), 'meta' (dict)}."""
    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); encoder files are written by "
                         "encoders.save_encoder") from e
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: a safetensors file but not a latentspaces encoder (format="
                         f"{header.get('format')!r}, expected {FORMAT!r})")
    if header.get("version") != VERSION:
        raise ValueError(f"{path}: encoder format version {header.get('version')!r}; this library reads {VERSION}")
    return {"class": header.get("class"), "config": json.loads(header["config"]), "meta": json.loads(header["meta"])}


def load_encoder(name_or_path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """An encoder (eval mode, float32, on `device`) from a shipped name ('default-f', ...) or a file path."""
    from safetensors.torch import load_file

    path = encoder_path(name_or_path) if str(name_or_path) in ENCODER_NAMES else Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"no encoder file at {path}; shipped names: {sorted(ENCODER_NAMES)}")
    head = read_encoder_meta(path)
    classes = _classes()
    if head["class"] not in classes:
        raise ValueError(f"{path}: encoder class {head['class']!r} is unknown; known: {sorted(classes)}")
    encoder = classes[head["class"]](**head["config"])
    state = load_file(os.fspath(path))
    own = encoder.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match a {head['class']} with its stored config "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    encoder.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    encoder.meta = head["meta"]
    return encoder.to(device).eval()
