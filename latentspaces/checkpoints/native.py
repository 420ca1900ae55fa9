"""The project's own generator format: one safetensors file, JSON config in its header.

Written through the storage layer (`latentspaces.storage`): header {"format": "latentspaces.generator",
"version": "1", "config": <JSON of Generator.config>}; tensors: the generator's state dict (float32),
names as in `Generator.state_dict()`. Reading it never unpickles anything; the config and the tensor
table (names, shapes) are checked against each other before any tensor data is read.
"""

from __future__ import annotations

import os
from typing import Union

import torch

from ..errors import CheckpointError
from ..generator import Generator
from ..generator.config import show
from ..storage import read_header, read_tensors, save_tensors, tensor_shapes
from .validation import MAX_GENERATOR_BYTES, build_generator, check_layout, finish

FORMAT = "latentspaces.generator"
VERSION = 1


def save_generator(G: Generator, path: Union[str, os.PathLike]) -> None:
    """Write G (config + float32 weights) to `path` in the project's safetensors format, atomically."""
    state = {k: v.detach().to("cpu", torch.float32) for k, v in G.state_dict().items()}
    save_tensors(path, state, FORMAT, VERSION, config=G.config)


def load_native(path: str, max_bytes: int = MAX_GENERATOR_BYTES, verify_output: bool = True) -> Generator:
    """Read a generator written by `save_generator`: header config and tensor table checked before any data."""
    header = read_header(path)
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a latentspaces generator (metadata format="
            f"{show(header.get('format'))}, expected {FORMAT!r}). Convert it with ls.save_generator(G, path)."
        )
    header = read_header(path, FORMAT, (VERSION,))
    if "config" not in header:
        raise CheckpointError(f"{path}: a {FORMAT} file without a config in its header")
    table = tensor_shapes(path)
    check_layout(header["config"], {k: shape for k, (shape, _) in table.items()}, path, max_bytes=max_bytes)
    G = build_generator(header["config"], read_tensors(path), path, max_bytes=max_bytes)
    return finish(G, path, verify_output)
