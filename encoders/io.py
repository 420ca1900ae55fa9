"""The encoder and compensation-head file format, and loading them by shipped name or path.

One safetensors file per network, written through the storage layer (`latentspaces.storage`): header
{"format": "latentspaces.encoder", "version": "2", "class": <JSON class name>, "config": <JSON of the
network's `config`>, "meta": <JSON, free-form: the generator it was trained for, training steps, ...>}
(version 1 stored the class name as a plain string; such files are still read);
tensors: the state dict, stored in float16 or float32 (BatchNorm step counters stay integer). Reading
never unpickles anything. Broken or foreign files raise `latentspaces.CheckpointError`.

Shipped networks for the embedded default generator are loaded by their names in the library's one
asset registry (`latentspaces.assets.ASSETS`, kinds 'encoder' and 'head'):
    enc = load_encoder("default-f")       # FEncoder for G's F layer b8.conv0
    enc = load_encoder("default-wplus")   # e4e-style W+ encoder
    head = load_encoder("default-sdic")   # SDIC compensation head
    head = load_encoder("default-hfgi")   # HFGI compensation head

Released checkpoints (`.pt`, `encoders.released`): `load_encoder` reads the W+ encoder of an e4e, HFGI or
pSp file, `load_head` the HFGI head (ADA + Ec) of an HFGI file; each says which parts of the file it left.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from latentspaces import assets
from latentspaces.errors import CheckpointError
from latentspaces.fingerprints import check_sidecar
from latentspaces.file_rules import config_is_plausible
from latentspaces.storage import load_module, read_header, read_raw_header, save_tensors

from .f_encoder import FEncoder
from .gradstyle import GradStyle
from .hfgi import HFGI
from .probing import check_probe
from .reganie import ReGANIE
from .sdic import SDIC
from .sdic_released import SDICReleased
from .released import load_bdinvert_encoder, load_psp_family_encoder, load_released_head
from .wplus_encoder import WPlusEncoder

FORMAT = "latentspaces.encoder"
VERSION = 2
VERSIONS = (1, 2)
CLASSES: Dict[str, type] = {cls.__name__: cls for cls in (FEncoder, WPlusEncoder, SDIC, SDICReleased, HFGI, ReGANIE,
                                                           GradStyle)}
# The compensation heads by method name; the shipped network of head h is 'default-h'.
COMPENSATION_HEADS = ("sdic", "hfgi", "gradstyle", "reganie")
METHOD_OF = {SDIC: "sdic", SDICReleased: "sdic", HFGI: "hfgi", ReGANIE: "reganie", GradStyle: "gradstyle"}
HEAD_CLASSES = tuple(METHOD_OF)   # the compensation heads' classes; METHOD_OF: the method each one is


def encoder_names() -> list:
    """The shipped encoder and head names (the library's asset registry, kinds 'encoder' and 'head'), sorted."""
    return sorted(assets.names("encoder") + assets.names("head"))


def save_encoder(encoder: torch.nn.Module, path: Union[str, os.PathLike], meta: dict | None = None,
                 half: bool = False) -> None:
    """Write `encoder` (config + weights; float16 weights when half=True) to `path`, atomically."""
    if type(encoder).__name__ not in CLASSES:
        raise TypeError(f"save_encoder writes {sorted(CLASSES)}, got {type(encoder).__name__}")
    state = {}
    for k, v in encoder.state_dict().items():
        v = v.detach()
        state[k] = v.to(torch.float16) if half and v.is_floating_point() else v
    save_tensors(path, state, FORMAT, VERSION, **{"class": type(encoder).__name__}, config=encoder.config,
                 meta=meta or {})


def encoder_path(name: str) -> Path:
    """File of a shipped encoder or head; KeyError for unknown names, FileNotFoundError naming the file and
    the command that makes it."""
    if name not in encoder_names():
        raise KeyError(f"unknown encoder name {name!r}; shipped encoders and heads: {encoder_names()} "
                       "(or pass the path of a file written by encoders.save_encoder)")
    return assets.asset_path(name)


def read_encoder_meta(path: Union[str, os.PathLike]) -> dict:
    """The header of an encoder file: {'class', 'config' (dict), 'meta' (dict)}."""
    raw = read_raw_header(path)
    missing = [k for k in ("class", "config", "meta") if k not in raw]
    if raw.get("format") == FORMAT and raw.get("version") == "1" and not missing:  # class as a plain string
        try:
            return {"class": raw["class"], "config": json.loads(raw["config"]), "meta": json.loads(raw["meta"])}
        except (ValueError, RecursionError) as e:  # RecursionError: JSON nested thousands of levels deep
            raise CheckpointError(f"{os.fspath(path)}: encoder header is not valid JSON ({type(e).__name__}: "
                                  f"{str(e)[:200]})") from None
    header = read_header(path, FORMAT, VERSIONS)
    if missing:
        raise CheckpointError(f"{os.fspath(path)}: encoder header lacks {missing}")
    if not isinstance(header["class"], str):
        raise CheckpointError(f"{os.fspath(path)}: encoder class is a {type(header['class']).__name__}, expected a name")
    return {"class": header["class"], "config": header["config"], "meta": header["meta"]}


def load_encoder(name_or_path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """An encoder or head (eval mode, float32, on `device`) from a shipped name ('default-f', ...) or a file path:
    the project's format, the W+ encoder of a released e4e, HFGI or pSp checkpoint (`.pt`), or BDInvert's base-code
    encoder (`.pth`, for b16.conv0 of a 1024 px generator) (`encoders.released`)."""
    path = encoder_path(name_or_path) if str(name_or_path) in encoder_names() else Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"no encoder file at {path}; shipped names: {encoder_names()}")
    if path.suffix.lower() == ".pt":   # e4e's own checkpoint: the trainers' --base-encoder takes it as it is
        check_sidecar(path)
        encoder = load_psp_family_encoder(str(path))
        check_probe(encoder, str(path))
        kind = "pSp" if encoder.codes == "rows" else "e4e"
        encoder.meta = {**getattr(encoder, "meta", {}), "source": f"{kind} checkpoint {path.name}"}
        return encoder.to(device).eval()
    if path.suffix.lower() == ".pth":   # BDInvert's base-code encoder
        check_sidecar(path)
        encoder = load_bdinvert_encoder(str(path))
        check_probe(encoder, str(path))
        encoder.meta = {"source": f"BDInvert encoder {path.name}"}
        return encoder.to(device).eval()
    check_sidecar(path)
    head = read_encoder_meta(path)
    if head["class"] not in CLASSES:
        raise CheckpointError(f"{path}: encoder class {head['class']!r} is unknown; known: {sorted(CLASSES)}")
    cls, config = CLASSES[head["class"]], head["config"]
    config_is_plausible(config, str(path), head["class"])
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the {head['class']} config is a {type(config).__name__}, expected an object")
    # fields added to a class's config later, with the value every file written before them was made with
    config = {**getattr(cls, "config_before_field", {}), **config}
    encoder = load_module(path, lambda: cls(**config), head["class"])
    check_probe(encoder, str(path))
    if not isinstance(head["meta"], dict):
        raise CheckpointError(f"{path}: the header's meta is a {type(head['meta']).__name__}, expected an object")
    encoder.meta = head["meta"]
    return encoder.to(device).eval()


def load_head(name_or_path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
              method: Optional[str] = None) -> torch.nn.Module:
    """A compensation head (eval mode, float32, on `device`): a shipped name ('default-hfgi', ...), a file of the
    project's format, or the head of a released checkpoint (`.pt`: HFGI's ADA + Ec, SDIC's DIPN + DICN,
    `encoders.released`).
    `method` ('sdic', 'hfgi', ...): the head must be that method's (CheckpointError naming what the file holds)."""
    path = encoder_path(name_or_path) if str(name_or_path) in encoder_names() else Path(name_or_path)
    if path.suffix.lower() != ".pt":
        head = load_encoder(path, device)
    elif not path.is_file():
        raise FileNotFoundError(f"no head file at {path}; shipped names: {encoder_names()}")
    else:
        check_sidecar(path)
        head = load_released_head(str(path))
        check_probe(head, str(path))
        head.meta = {"source": f"released checkpoint {path.name}"}
        head = head.to(device).eval()
    name = type(head).__name__
    if not isinstance(head, HEAD_CLASSES):
        raise CheckpointError(f"{path}: holds a {name}, not a compensation head "
                              f"({', '.join(c.__name__ for c in HEAD_CLASSES)})")
    if method is not None and METHOD_OF[type(head)] != method:
        raise CheckpointError(f"{path}: holds a {name} head, not a {method} one")
    return head
