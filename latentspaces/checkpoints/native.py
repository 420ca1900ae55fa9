"""The project's own generator format: one safetensors file, JSON config in its header.

Header metadata: {"format": "latentspaces.generator", "version": "1", "config": <JSON of
Generator.config>}. Tensors: the generator's state dict (float32), names as in
`Generator.state_dict()`. Reading it never unpickles anything.
"""

from __future__ import annotations

import json
import os
from typing import Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..generator import Generator
from .errors import CheckpointError

FORMAT = "latentspaces.generator"
VERSION = "1"
SAFETENSORS_MAX_HEADER = 100_000_000


def save_generator(G: Generator, path: Union[str, os.PathLike]) -> None:
    """Write G (config + float32 weights) to `path` in the project's safetensors format."""
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in G.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(G.config, sort_keys=True)}
    save_file(state, os.fspath(path), metadata=meta)


def read_safetensors_meta(path: str) -> dict:
    """Header metadata of a safetensors file ({} when it has none)."""
    try:
        with safe_open(path, framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:
        raise CheckpointError(f"{path}: looks like a safetensors file but its header cannot be read ({e}); "
                              "the file may be truncated or corrupt") from e


def load_native(path: str) -> Generator:
    """Read a generator written by `save_generator`."""
    meta = read_safetensors_meta(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a latentspaces generator (metadata format="
            f"{meta.get('format')!r}, expected {FORMAT!r}). Convert it with ls.save_generator(G, path)."
        )
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: latentspaces generator format version {meta.get('version')!r}, this "
                              f"library reads version {VERSION}")
    try:
        config = json.loads(meta["config"])
        G = Generator(**config)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid generator config in the header ({e})") from e
    try:
        state = {}
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                state[key] = f.get_tensor(key)
        G.load_state_dict(state, strict=True)
    except Exception as e:
        raise CheckpointError(f"{path}: weights do not match the stored config or the file is corrupt ({e})") from e
    return G.eval().requires_grad_(False)
