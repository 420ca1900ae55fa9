"""Documents of a small generator in every checkpoint format the fuzzer writes, and their writers.

A `Doc` is a checkpoint before it is written: the generator's tensors under the format's own names and
the fields the format declares, which the mutations then damage. `small_generator` draws a tiny random
generator, `make_doc` gives its document in one format, and `write_doc` serialises a document: a
safetensors file (native), a torch.save archive or legacy stream (rosinality, e4e, genforce), or an NVlabs network
pickle, spelled record by record by `_nvlabs_bytes` under stand-in `torch_utils` / `dnnlib` names.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import math
import pickle
import random
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List
from unittest import mock

import torch
from safetensors.torch import save_file

FORMATS = ("native", "rosinality", "rosinality-legacy", "e4e", "nvlabs", "genforce")
BUFFERS = ("w_avg", "noise_const", "resample_filter")


# ---------------------------------------------------------------------------------- documents
@dataclass
class Doc:
    """A checkpoint before it is written: flat tensors under the format's own names, declared fields."""

    fmt: str
    tensors: Dict[str, object]
    fields: Dict[str, object]                      # format-level declarations (config entries, attributes)
    modules: Dict[str, str] = field(default_factory=dict)  # NVlabs: module path -> class name
    extra: Dict[str, object] = field(default_factory=dict)  # structural mutations (deep nesting, raw header)
    notes: List[str] = field(default_factory=list)


def small_generator(rng: random.Random):
    """A random tiny generator (8 or 16 px, 4-8 channels) with nonzero biases and noise strengths."""
    import latentspaces as ls
    torch.manual_seed(rng.randrange(2**31))
    resolution = rng.choice([8, 16])
    channels = {r: rng.choice([4, 6, 8]) for r in (4, 8, 16) if r <= resolution}
    G = ls.Generator(z_dim=rng.choice([8, 12]), w_dim=rng.choice([8, 16]), resolution=resolution,
                     mapping_layers=rng.choice([1, 2, 3]), channels=channels,
                     conv_clamp=rng.choice([None, 256.0]), use_noise=rng.random() < 0.9)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith("bias") and not name.endswith("affine.bias")):
                p.copy_(0.1 * torch.randn(p.shape))
        G.mapping.w_avg.copy_(0.1 * torch.randn(G.w_dim))
    return G.eval().requires_grad_(False)


def _rosinality_able(G) -> bool:
    c = G.config
    return c["conv_clamp"] is None and c["use_noise"] and c["mapping_lr_multiplier"] == 0.01


def make_doc(G, fmt: str) -> Doc:
    """The document of G in format `fmt` (rosinality-family formats need a rosinality-expressible G)."""
    from latentspaces.checkpoints.rosinality import rosinality_state_dict
    if fmt == "native":
        config = G.config
        fields = {f"config.{k}": copy.deepcopy(v) for k, v in config.items()}
        return Doc(fmt, {k: v.clone() for k, v in G.state_dict().items()}, fields)
    if fmt in ("rosinality", "rosinality-legacy"):
        return Doc(fmt, rosinality_state_dict(G), {"latent_avg": G.w_avg.clone()})
    if fmt == "e4e":
        return Doc(fmt, rosinality_state_dict(G), {"latent_avg": G.w_avg[None].repeat(G.num_ws, 1)})
    if fmt == "nvlabs":
        return _nvlabs_doc(G)
    if fmt == "genforce":
        from latentspaces.checkpoints.genforce import genforce_state_dict
        return Doc(fmt, genforce_state_dict(G), {})
    raise ValueError(f"unknown format {fmt!r}; formats: {FORMATS}")


def _nvlabs_doc(G) -> Doc:
    from latentspaces.generator.ops import setup_filter
    c = G.config
    tensors: Dict[str, object] = {k: v.clone() for k, v in G.state_dict().items()}
    filt = setup_filter(c["resample_taps"])
    modules = {"": "Generator", "mapping": "MappingNetwork", "synthesis": "SynthesisNetwork"}
    fields: Dict[str, object] = {
        ":_init_kwargs": {"z_dim": c["z_dim"], "w_dim": c["w_dim"], "c_dim": 0, "img_resolution": c["resolution"],
                          "img_channels": c["img_channels"], "mapping_kwargs": {"num_layers": c["mapping_layers"]},
                          "synthesis_kwargs": {"architecture": "skip", "conv_clamp": c["conv_clamp"]}},
        "mapping:num_layers": c["mapping_layers"],
    }
    for i in range(c["mapping_layers"]):
        fan_in = c["z_dim"] if i == 0 else c["w_dim"]
        modules[f"mapping.fc{i}"] = "FullyConnectedLayer"
        fields.update({f"mapping.fc{i}:bias_gain": c["mapping_lr_multiplier"], f"mapping.fc{i}:activation": "lrelu",
                       f"mapping.fc{i}:weight_gain": c["mapping_lr_multiplier"] / math.sqrt(fan_in)})
    chans = {int(k): v for k, v in c["channels"].items()}
    for r, ch in sorted(chans.items()):
        block = f"synthesis.b{r}"
        modules[block] = "SynthesisBlock"
        fields.update({f"{block}:architecture": "skip", f"{block}:in_channels": 0 if r == 4 else chans[r // 2]})
        tensors[f"{block}.resample_filter"] = filt.clone()
        for layer in (["conv0"] if r > 4 else []) + ["conv1"]:
            modules[f"{block}.{layer}"] = "SynthesisLayer"
            fields.update({f"{block}.{layer}:conv_clamp": c["conv_clamp"], f"{block}.{layer}:use_noise": c["use_noise"],
                           f"{block}.{layer}:activation": "lrelu", f"{block}.{layer}:up": 2 if layer == "conv0" else 1,
                           f"{block}.{layer}:padding": 1, f"{block}.{layer}:act_gain": math.sqrt(2)})
            tensors[f"{block}.{layer}.resample_filter"] = filt.clone()
        modules[f"{block}.torgb"] = "ToRGBLayer"
        fields.update({f"{block}.torgb:conv_clamp": c["conv_clamp"], f"{block}.torgb:weight_gain": 1 / math.sqrt(ch)})
        for layer in (["conv0"] if r > 4 else []) + ["conv1", "torgb"]:
            modules[f"{block}.{layer}.affine"] = "FullyConnectedLayer"
            fields.update({f"{block}.{layer}.affine:bias_gain": 1, f"{block}.{layer}.affine:activation": "linear",
                           f"{block}.{layer}.affine:weight_gain": 1 / math.sqrt(c["w_dim"])})
    return Doc("nvlabs", tensors, fields, modules)


# ---------------------------------------------------------------------------------- writers
class _Call:
    """Pickles as fn(*args): how the persistent-object records of NVlabs pickles are spelled."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _never_called(*args, **kwargs):  # stand-in for NVlabs' reconstruct function while dumping
    raise AssertionError("the stand-in must never run")


@contextlib.contextmanager
def _nvlabs_names() -> Iterator[types.SimpleNamespace]:
    """Fake `torch_utils.persistence` / `dnnlib.util` modules, present only while pickling their names."""
    persistence = types.ModuleType("torch_utils.persistence")
    fn = types.FunctionType(_never_called.__code__, {}, "_reconstruct_persistent_obj")
    fn.__module__, fn.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = fn
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util", "__qualname__": "EasyDict"})
    torch_utils, dnnlib = types.ModuleType("torch_utils"), types.ModuleType("dnnlib")
    torch_utils.persistence, dnnlib.util = persistence, util
    fakes = {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "dnnlib": dnnlib, "dnnlib.util": util}
    with mock.patch.dict(sys.modules, fakes):
        yield types.SimpleNamespace(reconstruct=fn, EasyDict=util.EasyDict)


def _easy(value: object, names: types.SimpleNamespace) -> object:
    if isinstance(value, dict):
        return names.EasyDict({k: _easy(v, names) for k, v in value.items()})
    return value


def _nvlabs_bytes(doc: Doc) -> bytes:
    with _nvlabs_names() as names:
        states: Dict[str, dict] = {}

        def state(path: str) -> dict:
            if path not in states:
                states[path] = dict(training=False, _parameters=collections.OrderedDict(),
                                    _buffers=collections.OrderedDict(), _non_persistent_buffers_set=set(),
                                    _modules=collections.OrderedDict())
                if path:
                    parent, _, name = path.rpartition(".")
                    state(parent)["_modules"][name] = path  # replaced by the record below
            return states[path]

        for path in doc.modules:
            state(path)
        for key, value in doc.tensors.items():
            path, _, name = key.rpartition(".")
            table = "_buffers" if name in BUFFERS else "_parameters"
            if table == "_parameters" and isinstance(value, torch.Tensor) and value.is_floating_point():
                value = torch.nn.Parameter(value, requires_grad=False)
            state(path)[table][name] = value
        for key, value in doc.fields.items():
            path, _, attr = key.partition(":")
            state(path)[attr] = _easy(value, names)
        records: Dict[str, _Call] = {}

        def record(path: str) -> _Call:
            if path not in records:
                meta = dict(type="class", version=6, module_src="# omitted\n",
                            class_name=doc.modules.get(path, "Module"), state=states[path])
                records[path] = _Call(names.reconstruct, (meta,))
                for name, child in list(states[path]["_modules"].items()):
                    states[path]["_modules"][name] = record(child)
            return records[path]

        root = record("")
        depth = int(doc.extra.get("deep_records", 0))
        if depth:
            chain = None
            for _ in range(depth):
                meta = dict(type="class", version=6, module_src="", class_name="Module",
                            state=dict(training=False, _parameters={}, _buffers={}, _non_persistent_buffers_set=set(),
                                       _modules={"next": chain}))
                chain = _Call(names.reconstruct, (meta,))
            states[""]["_modules"]["deep"] = chain
        levels = int(doc.extra.get("dag_levels", 0))
        if levels:
            shared = None
            for _ in range(levels):   # each level's record holds the one below twice: 2^levels paths
                meta = dict(type="class", version=6, module_src="", class_name="Module",
                            state=dict(training=False, _parameters={}, _buffers={}, _non_persistent_buffers_set=set(),
                                       _modules={"a": shared, "b": shared}))
                shared = _Call(names.reconstruct, (meta,))
            states[""]["_modules"]["shared"] = shared
        top = {"training_set_kwargs": {}, "G": root, "D": None, "G_ema": root, "augment_pipe": None}
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20 * depth + 1000))  # pickling a deep chain recurses once per level
        try:
            return pickle.dumps(top, protocol=4)
        finally:
            sys.setrecursionlimit(limit)


def _deep(depth: int) -> object:
    value: object = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def write_doc(doc: Doc, path: Path) -> None:
    """Serialise `doc` to `path` in its format."""
    if doc.fmt == "native":
        config: Dict[str, object] = {}
        for key, value in doc.fields.items():
            config[key.split(".", 1)[1]] = value
        raw = doc.extra.get("raw_config")
        text = raw if isinstance(raw, str) else json.dumps(config, allow_nan=True)
        meta = {"format": "latentspaces.generator", "version": "1", "config": text}
        save_file({k: v.contiguous() for k, v in doc.tensors.items()}, str(path), metadata=meta)
    elif doc.fmt in ("rosinality", "rosinality-legacy", "e4e"):
        obj: Dict[str, object]
        if doc.fmt == "e4e":
            obj = {"state_dict": {f"decoder.{k}": v for k, v in doc.tensors.items()}}
        else:
            obj = {"g_ema": dict(doc.tensors)}
        if "latent_avg" in doc.fields:
            obj["latent_avg"] = doc.fields["latent_avg"]
        if doc.extra.get("deep_dict"):
            obj["args"] = _deep(int(doc.extra["deep_dict"]))
        torch.save(obj, str(path), _use_new_zipfile_serialization=doc.fmt != "rosinality-legacy")
    elif doc.fmt == "genforce":   # BDInvert's file: the EMA generator beside the others
        torch.save({"generator_smooth": dict(doc.tensors), "discriminator": {}}, str(path))
    else:
        path.write_bytes(_nvlabs_bytes(doc))
