"""Load StyleGAN2 generators from the files users have, and save the project's own format.

`load_generator(path_or_name)` looks at the file's first bytes, not at its name:
- zip archive (torch.save) or legacy torch.save stream -> rosinality checkpoint (weights-only load);
- pickle stream -> NVlabs stylegan2-ada / stylegan3 network pickle (restricted unpickler);
- safetensors -> the project's own format (`save_generator`);
- a registered name such as "default" -> the embedded default model.
Anything else is refused with a message saying what the file looks like.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Union

import torch

from .. import assets
from ..errors import CheckpointError
from ..generator import Generator
from .native import load_native, save_generator
from .nvlabs import load_nvlabs
from .rosinality import load_rosinality

# torch.save's legacy (non-zip) format starts with its pickled magic number 0x1950a86a20f9469cfc6c.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"

SUPPORTED = ("rosinality .pt (torch.save dict with 'g_ema'), NVlabs stylegan2-ada/stylegan3 .pkl network "
             "pickles, latentspaces .safetensors (ls.save_generator), or a shipped generator name "
             f"({', '.join(assets.names('generator'))})")


def _last_byte(path: str) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _is_safetensors(path: str, head: bytes, size: int) -> bool:
    """8-byte little-endian header length, then that many bytes of JSON object."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    if n > min(size - 8, 100_000_000):
        return False
    with open(path, "rb") as f:
        f.seek(8)
        try:
            return isinstance(json.loads(f.read(n)), dict)
        except ValueError:
            return False


def sniff_format(path: Union[str, os.PathLike]) -> str:
    """'torch-zip', 'torch-legacy', 'pickle' or 'safetensors' from the first bytes; CheckpointError otherwise."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(16)
    size = os.path.getsize(path)
    if not head:
        raise CheckpointError(f"{path}: the file is empty. Supported: {SUPPORTED}")
    if _is_safetensors(path, head, size):  # first: its 8-byte length prefix can look like a pickle header
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head[:1] in (b"(", b"}", b"]", b"c") and _last_byte(path) == b".":
        return "pickle"  # protocol 0/1 pickles have no header; they end with STOP
    if head.startswith(b"\x1f\x8b"):
        what = "a gzip stream"
    elif head.startswith(b"\x89HDF"):
        what = "an HDF5 file (Keras?)"
    elif head[:1] in (b"{", b"["):
        what = "a JSON/text file"
    else:
        what = f"unknown content (first bytes {head[:8]!r})"
    raise CheckpointError(f"{path}: not a generator checkpoint: {what}. Supported: {SUPPORTED}")


def load_generator(path_or_name: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> Generator:
    """Load a StyleGAN2 generator in eval mode, gradients off, on `device`.

    path_or_name: a registered asset name ("default") or a checkpoint file path.
    """
    if isinstance(path_or_name, str) and path_or_name in assets.names("generator"):
        return load_native(str(assets.asset_path(path_or_name, "generator"))).to(device)
    path = Path(path_or_name)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r} (and not a shipped name; names: "
                                f"{assets.names('generator')}). Supported: {SUPPORTED}")
    kind = sniff_format(path)
    if kind in ("torch-zip", "torch-legacy"):
        G = load_rosinality(str(path))
    elif kind == "pickle":
        G = load_nvlabs(str(path))
    else:
        G = load_native(str(path))
    return G.to(device)


__all__ = ["CheckpointError", "load_generator", "save_generator", "sniff_format"]
