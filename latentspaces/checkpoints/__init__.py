"""Load StyleGAN2 generators from the files users have, and save the project's own format.

`load_generator(path_or_name)` looks at the file's first bytes, not at its name:
- zip archive (torch.save) or legacy torch.save stream -> rosinality checkpoint, or genforce's
  ({'generator_smooth', ...}: BDInvert's), told apart by their keys (weights-only load); a zip archive
  pickling a whole NVlabs Generator (PTI's tuned generator) -> the NVlabs reader below;
- pickle stream -> NVlabs stylegan2-ada / stylegan3 network pickle (restricted unpickler);
- safetensors -> the project's own format (`save_generator`);
- a registered name such as "default" -> the embedded default model.
Anything else is refused with a message saying what the file looks like. Every format goes through
one rule before anything is allocated (`validation`): the declared architecture is bounded and checked
against the tensors present; weights must be floating and finite; the loaded generator's w_avg and one
rendered image must be finite. Every failure is a `CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path
from typing import Iterator, Union

import torch

from .. import assets
from ..errors import CheckpointError
from ..fingerprints import check_sidecar
from ..generator import Generator
from .native import load_native, save_generator
from .nvlabs import load_nvlabs
from .nvlabs_archive import is_nvlabs_module_archive
from .genforce import convert_genforce, looks_like_genforce
from .rosinality import ROSINALITY_GLOBALS, load_rosinality_object
from ..torch_files import LEGACY_MAGIC, MAX_ARCHIVE_BYTES, load_torch_file
from .validation import MAX_GENERATOR_BYTES
from .validation import verify_output as verify_output_finite


SUPPORTED = ("rosinality .pt (torch.save dict with 'g_ema'), genforce .pth ('generator_smooth'), NVlabs stylegan2-ada/stylegan3 .pkl network "
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
        except (ValueError, RecursionError):
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
    if head.startswith(LEGACY_MAGIC):
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


@contextlib.contextmanager
def _refusing_as_checkpoint_error(path: str, kind: str) -> Iterator[None]:
    """Re-raise anything but CheckpointError (and memory errors, interrupts) as CheckpointError naming the file.

    A safety net: every known failure has its own check and message in the loaders; what reaches the
    last branch is flagged `safety_net` (experiments.tools.fuzz_checkpoints counts it: it should be 0).
    """
    try:
        yield
    except (CheckpointError, MemoryError, KeyboardInterrupt):
        raise
    except RecursionError:
        raise CheckpointError(f"{path}: the file's structure is nested too deeply to be a generator checkpoint") from None
    except Exception as e:
        error = CheckpointError(f"{path}: could not be read as a {kind} generator ({type(e).__name__}: "
                                f"{str(e)[:300]}); the file is damaged or an unsupported variant")
        error.safety_net = True
        raise error from e


def _load_torch_generator(path: str, max_bytes: int = MAX_GENERATOR_BYTES, verify_output: bool = True) -> Generator:
    """A torch.save file read once (weights only), then converted as genforce's or rosinality's by its keys."""
    if is_nvlabs_module_archive(path):   # PTI's torch.save(G): a pickled NVlabs module, read as NVlabs records
        return load_nvlabs(path, max_bytes, verify_output)
    obj = load_torch_file(path, "generator checkpoint", ROSINALITY_GLOBALS, max_bytes=max(max_bytes, MAX_ARCHIVE_BYTES))
    if looks_like_genforce(obj):
        return convert_genforce(obj, path, max_bytes, verify_output)
    return load_rosinality_object(obj, path, max_bytes, verify_output)


def load_generator(path_or_name: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu", *,
                   max_bytes: int = MAX_GENERATOR_BYTES, verify_output: bool = True) -> Generator:
    """Load a StyleGAN2 generator in eval mode, gradients off, on `device`.

    path_or_name: a registered asset name ("default") or a checkpoint file path.
    max_bytes: refuse files whose declared architecture needs more memory than this (float32 weights and
        buffers, plus rendering one image for the output check: `checkpoints.validation.check_layout`).
    verify_output: render one image from a fixed z on `device` and refuse a non-finite one (see
        `checkpoints.validation`; about 5 s for a 1024 px generator on a 2-core CPU).
    Every failure to read a file is a CheckpointError naming the file and the problem.
    """
    if isinstance(path_or_name, str) and path_or_name in assets.names("generator"):
        path_or_name = assets.asset_path(path_or_name, "generator")
    elif not Path(path_or_name).is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path_or_name)!r} (and not a shipped name; names: "
                                f"{assets.names('generator')}). Supported: {SUPPORTED}")
    path = str(path_or_name)
    check_sidecar(path)
    kind = sniff_format(path)
    loader = {"torch-zip": _load_torch_generator, "torch-legacy": _load_torch_generator, "pickle": load_nvlabs,
              "safetensors": load_native}[kind]
    with _refusing_as_checkpoint_error(path, kind):
        G = loader(path, max_bytes=max_bytes, verify_output=False)
    G = G.to(device)
    if verify_output:
        with _refusing_as_checkpoint_error(path, kind):
            verify_output_finite(G, path)
    return G


__all__ = ["CheckpointError", "MAX_GENERATOR_BYTES", "load_generator", "save_generator", "sniff_format"]
