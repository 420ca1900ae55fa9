"""The project's own generator format: one safetensors file, JSON config in its header.

Written through the storage layer (`latentspaces.io`): header {"format": "latentspaces.generator",
"version": "1", "config": <JSON of Generator.config>}; tensors: the generator's state dict (float32),
names as in `Generator.state_dict()`. Reading it never unpickles anything.
"""

from __future__ import annotations

import os
from typing import Union

import torch

from ..errors import CheckpointError
from ..generator import Generator
from ..io import load_tensors, read_header, save_tensors

FORMAT = "latentspaces.generator"
VERSION = 1


def save_generator(G: Generator, path: Union[str, os.PathLike]) -> None:
    """Write G (config + float32 weights) to `path` in the project's safetensors format, atomically."""
    state = {k: v.detach().to("cpu", torch.float32) for k, v in G.state_dict().items()}
    save_tensors(path, state, FORMAT, VERSION, config=G.config)


def load_native(path: str) -> Generator:
    """Read a generator written by `save_generator`."""
    header = read_header(path)
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a latentspaces generator (metadata format="
            f"{header.get('format')!r}, expected {FORMAT!r}). Convert it with ls.save_generator(G, path)."
        )
    state, header = load_tensors(path, FORMAT, (VERSION,))
    try:
        G = Generator(**header["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid generator config in the header ({e})") from e
    try:
        G.load_state_dict(state, strict=True)
    except Exception as e:
        raise CheckpointError(f"{path}: weights do not match the stored config or the file is corrupt ({e})") from e
    return G.eval().requires_grad_(False)
