"""NVlabs stylegan2-ada-pytorch / stylegan3 (StyleGAN2 config) network pickles -> Generator.

The pickle is read by the restricted unpickler in `nvlabs_pickle` (nothing from the file
runs). The architecture comes from the recorded constructor arguments and per-module
attributes (`_init_kwargs`, `conv_clamp`, `use_noise`, `bias_gain`, ...); channel counts
are read from the weight shapes. State-dict names are already this project's names;
the per-layer `resample_filter` buffers are configuration here and are checked, not copied.
Before anything is allocated, the declared architecture is checked against the tensors present and
every per-layer attribute NVlabs' forward pass reads (gains, clamps, noise flags, activations) is held
equal to what this project's layers compute with (`validation.build_generator`, `_check_layer_attributes`).
NVlabs' fp16 layers (num_fp16_res) are run in float32.
"""

from __future__ import annotations

import math
import numbers
from typing import Dict, Tuple

import torch

from ..errors import CheckpointError
from ..generator import Generator
from ..generator.config import show
from ..generator.ops import setup_filter
from ..torch_files import MAX_ARCHIVE_BYTES, check_torch_archive
from .nvlabs_archive import is_nvlabs_module_archive, load_nvlabs_module_archive
from .nvlabs_pickle import MissingChildError, PersistentRecord, load_nvlabs_pickle
from .validation import MAX_GENERATOR_BYTES, build_generator, check_tensor, checked_config, finish


def _taps_from_filter(f: torch.Tensor) -> list:
    """Recover 1-D taps from a separable 2-D filter outer(t, t) / sum^2 (up to scale)."""
    t = f.double().sum(dim=0)
    return (t / t.sum()).tolist()


def _table(rec: PersistentRecord, name: str, path: str) -> dict:
    """A dict-valued attribute (``_init_kwargs``, ``mapping_kwargs``), {} when absent, else CheckpointError."""
    value = rec.attr(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: {rec.class_name}.{name} is a {type(value).__name__}, expected a dict")
    return dict(value)


def _close(a: object, b: float) -> bool:
    return isinstance(a, numbers.Real) and not isinstance(a, bool) and math.isclose(float(a), b, rel_tol=1e-5)


def expected_records(cfg: dict) -> Dict[str, Tuple[str, Dict[str, object]]]:
    """{place in G: (NVlabs class name, {attribute: value its forward pass must find})} for a config.

    The attributes are the ones stylegan2-ada-pytorch's ``networks.py`` reads in forward: gains (the
    SynthesisLayer's ``act_gain`` is lrelu's sqrt(2)), clamps, noise flags, activations, a convolution's
    ``up`` and ``padding``, a block's ``architecture``. Keyed by place, so a record whose class name was
    edited is held to the same values (and its class name checked too).
    """
    lr_mul, w_dim, clamp = cfg["mapping_lr_multiplier"], cfg["w_dim"], cfg["conv_clamp"]
    affine = ("FullyConnectedLayer", {"activation": "linear", "bias_gain": 1.0, "weight_gain": 1 / math.sqrt(w_dim)})
    places: Dict[str, Tuple[str, Dict[str, object]]] = {
        "": ("Generator", {}), "mapping": ("MappingNetwork", {}), "synthesis": ("SynthesisNetwork", {})}
    for i in range(cfg["mapping_layers"]):
        fan_in = cfg["z_dim"] if i == 0 else w_dim
        places[f"mapping.fc{i}"] = ("FullyConnectedLayer", {"activation": "lrelu", "bias_gain": lr_mul,
                                                            "weight_gain": lr_mul / math.sqrt(fan_in)})
    for res, channels in cfg["channels"].items():
        block = f"synthesis.b{res}"
        places[block] = ("SynthesisBlock", {"architecture": "skip",
                                            "in_channels": 0 if res == 4 else cfg["channels"][res // 2]})
        for conv, up in (("conv0", 2), ("conv1", 1)):
            if conv == "conv0" and res == 4:
                continue
            places[f"{block}.{conv}"] = ("SynthesisLayer", {"up": up, "padding": 1, "activation": "lrelu",
                                                            "act_gain": math.sqrt(2), "conv_clamp": clamp,
                                                            "use_noise": cfg["use_noise"]})
            places[f"{block}.{conv}.affine"] = affine
        places[f"{block}.torgb"] = ("ToRGBLayer", {"conv_clamp": clamp, "weight_gain": 1 / math.sqrt(channels)})
        places[f"{block}.torgb.affine"] = affine
    return places


def _same(found: object, value: object) -> bool:
    if value is None:
        return found is None
    if isinstance(value, bool):
        return found in (True, False) and bool(found) == value  # numpy bools compare equal to True/False
    if isinstance(value, str):
        return isinstance(found, str) and found == value
    if isinstance(value, int):
        return isinstance(found, numbers.Integral) and not isinstance(found, bool) and int(found) == value
    return _close(found, float(value))


def _check_layer_attributes(G_rec: PersistentRecord, cfg: dict, path: str) -> None:
    """Every record at its place, of its class, with the attribute values this project's layers compute with.

    A file whose per-layer gains, clamps, noise flags, activations, resampling or block architecture differ
    (NaN included) would render differently here than in NVlabs' code, so it is refused rather than silently
    'corrected'; so is a module at a place NVlabs' generator has none.
    """
    places = expected_records(cfg)
    for where, rec in G_rec.walk():
        if where not in places:
            raise CheckpointError(f"{path}: a {show(rec.class_name)} module at {show(where)}, a place NVlabs' "
                                  "StyleGAN2 generator has no module; not supported")
        name, expect = places[where]
        if rec.class_name != name:
            raise CheckpointError(f"{path}: the module at {where or 'G'} is a {show(rec.class_name)}, expected "
                                  f"NVlabs' {name!r}")
        for attr, value in expect.items():
            found = rec.attr(attr)
            if not _same(found, value):
                raise CheckpointError(f"{path}: {where}.{attr} = {show(found)}, but this generator computes with "
                                      f"{show(value)} (from the recorded architecture); a file whose layers differ "
                                      "is not supported")


def _declared_config(G_rec: PersistentRecord, sd: Dict[str, torch.Tensor], path: str) -> Tuple[dict, dict]:
    """(Generator config, {field: where it came from}) from the recorded constructor arguments and shapes."""
    kw = _table(G_rec, "_init_kwargs", path)
    mapping = G_rec.child("mapping")
    synthesis = G_rec.child("synthesis")
    num_layers = mapping.attr("num_layers", _table(mapping, "_init_kwargs", path).get("num_layers", 8))
    sources = {"z_dim": "G._init_kwargs['z_dim']", "w_dim": "G._init_kwargs['w_dim']",
               "img_channels": "G._init_kwargs['img_channels']", "mapping_layers": "mapping.num_layers",
               "mapping_lr_multiplier": "mapping.fc0.bias_gain", "conv_clamp": "synthesis.b4.conv1.conv_clamp",
               "resolution": "G._init_kwargs['img_resolution']"}
    config = checked_config(dict(z_dim=kw.get("z_dim", 512), w_dim=kw.get("w_dim", 512),
                                 img_channels=kw.get("img_channels", 3), mapping_layers=num_layers,
                                 resolution=kw.get("img_resolution", 0)), path, sources)
    b4conv = synthesis.child("b4").child("conv1")
    channels, res = {}, 4
    while f"synthesis.b{res}.conv1.weight" in sd and res <= config["resolution"]:
        weight = sd[f"synthesis.b{res}.conv1.weight"]
        if weight.ndim != 4:
            raise CheckpointError(f"{path}: synthesis.b{res}.conv1.weight has shape {list(weight.shape)}; "
                                  "expected [out, in, 3, 3]")
        channels[res] = int(weight.shape[0])
        res *= 2
    if max(channels, default=0) != config["resolution"]:
        raise CheckpointError(f"{path}: img_resolution {config['resolution']} but synthesis blocks up to "
                              f"{max(channels, default=0)}")
    filt = sd.get("synthesis.b8.resample_filter", sd.get("synthesis.b4.conv1.resample_filter"))
    taps = [1.0, 3.0, 3.0, 1.0]
    if filt is not None:
        filt = check_tensor("resample_filter", filt, None, path)
        if filt.ndim != 2 or filt.shape[0] != filt.shape[1]:
            raise CheckpointError(f"{path}: resample_filter has shape {list(filt.shape)}; expected a square [k, k]")
        taps = _taps_from_filter(filt)
    config.update(mapping_lr_multiplier=mapping.child("fc0").attr("bias_gain", 0.01), channels=channels,
                  conv_clamp=b4conv.attr("conv_clamp"), use_noise=b4conv.attr("use_noise", True), resample_taps=taps)
    sources["resample_taps"] = "synthesis.*.resample_filter"
    return checked_config(config, path, sources), sources


def convert_nvlabs(G_rec: PersistentRecord, path: str = "<pickle>", max_bytes: int = MAX_GENERATOR_BYTES,
                   verify_output: bool = True) -> Generator:
    """Build a Generator from the `G_ema` (or `G`) record of an NVlabs pickle (checked before allocating)."""
    if G_rec.class_name != "Generator":
        raise CheckpointError(f"{path}: G_ema is a {show(G_rec.class_name)}, expected an NVlabs 'Generator'")
    kw = _table(G_rec, "_init_kwargs", path)
    c_dim = kw.get("c_dim", 0) or 0
    if not isinstance(c_dim, numbers.Integral) or c_dim != 0:
        raise CheckpointError(f"{path}: conditional generator (c_dim={show(c_dim)}); only unconditional "
                              "StyleGAN2 generators (c_dim = 0) are supported")
    try:
        syn = G_rec.child("synthesis")
        syn_modules = syn._table("_modules")
        if "input" in syn_modules or any(str(name).startswith("L0_") for name in syn_modules):
            raise CheckpointError(f"{path}: a StyleGAN3 (alias-free) generator; only StyleGAN2 generators "
                                  "(stylegan2-ada, or stylegan3's --cfg=stylegan2) are supported")
        architecture = _table(G_rec, "_init_kwargs", path).get("synthesis_kwargs") or {}
        architecture = architecture.get("architecture", "skip") if isinstance(architecture, dict) else architecture
        if architecture != "skip":
            raise CheckpointError(f"{path}: synthesis architecture {show(architecture)}; only 'skip' (the StyleGAN2 "
                                  "config-e/f generator and ada's default) is supported")
        if G_rec.child("mapping")._table("_modules").get("embed") is not None:
            raise CheckpointError(f"{path}: mapping network has a label embedding; conditional models are not supported")
        sd = G_rec.state_dict()  # stored dtypes (fp16 layers too): nothing is cast before the checks below
        config, sources = _declared_config(G_rec, sd, path)
        _check_layer_attributes(G_rec, config, path)
    except MissingChildError as e:
        raise CheckpointError(f"{path}: synthesis network layout not recognised ({e})") from None
    expected = setup_filter(config["resample_taps"])
    for k in [k for k in sd if k.endswith("resample_filter")]:
        filt = check_tensor(k, sd.pop(k), tuple(expected.shape), path)
        if not torch.allclose(filt.float(), expected, atol=1e-6):
            raise CheckpointError(f"{path}: {k} differs from the other resampling filters; not supported")
    G = build_generator(config, sd, path, sources=sources, max_bytes=max_bytes)
    return finish(G, path, verify_output)


def load_nvlabs(path: str, max_bytes: int = MAX_GENERATOR_BYTES, verify_output: bool = True) -> Generator:
    """Read G_ema (else G) from an NVlabs network pickle, or the Generator that PTI saved with torch.save
    (`nvlabs_archive`), without executing anything."""
    if is_nvlabs_module_archive(path):
        check_torch_archive(path, "torch.save of an NVlabs Generator", max(max_bytes, MAX_ARCHIVE_BYTES))
        return convert_nvlabs(load_nvlabs_module_archive(path)["G_ema"], path, max_bytes, verify_output)
    data = load_nvlabs_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: a pickle, but its top level is a {type(data).__name__}, not the NVlabs "
                              "network dict (training_set_kwargs, G, D, G_ema, augment_pipe)")
    rec = data.get("G_ema") if data.get("G_ema") is not None else data.get("G")
    if not isinstance(rec, PersistentRecord):
        raise CheckpointError(f"{path}: a pickle without a 'G_ema' or 'G' network (keys: {sorted(map(str, data))[:8]})")
    return convert_nvlabs(rec, path, max_bytes, verify_output)
