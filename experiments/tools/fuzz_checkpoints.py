"""Seeded checkpoint fuzzer: small generators in every format, mutated, loaded in a sandboxed worker.

    python -m experiments.tools.fuzz_checkpoints --mutants 2000 --seed 1

Every mutant is a small random generator written in one of the formats `ls.load_generator` reads,
then damaged by one to three mutations drawn from the families a hostile or broken file shows:
non-finite or overflowing values, other dtypes, other shapes (a leading 2, dropped or added dims,
empty tensors), stride-0 views of huge shape, missing / extra / renamed keys, non-tensor values,
implausible declared sizes and config values (0, -1, 10**7, 2**62, NaN, strings, odd or zero taps),
nesting thousands of levels deep, and byte-level damage (truncation, flipped bytes, zeroed runs).

Mutants are loaded by a worker process with an address-space limit (`--limit-mb` above what torch
itself maps) and a per-file time limit; each gets one outcome:

    loaded      a generator with a valid config whose images for two fixed z are finite
    refused     CheckpointError from a check that anticipated the problem
    safety-net  CheckpointError from load_generator's catch-all (an unanticipated failure: should be 0)
    non-finite  loaded, but its config is invalid or its images are not finite   (must be 0)
    other       any other exception                                             (must be 0)
    hang        over the time limit                                             (must be 0)
    memory      an allocation past the memory limit, or the worker died          (must be 0)

The NVlabs pickles are written from this project's generator with the record layout of NVlabs'
network pickles (module class names, attributes, parameters and buffers), their module source
omitted: they exercise our restricted reader, and NVlabs' code could not run them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import importlib
import json
import math
import pickle
import queue
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence
from unittest import mock

import torch
from safetensors.torch import save_file

from latentspaces.io import atomic_write_text

FORMATS = ("native", "rosinality", "rosinality-legacy", "e4e", "nvlabs")
OUTCOMES = ("loaded", "refused", "safety-net", "non-finite", "other", "hang", "memory")
FAILURES = ("safety-net", "non-finite", "other", "hang", "memory")
BUFFERS = ("w_avg", "noise_const", "resample_filter")
HOSTILE_NUMBERS = [0, -1, 1, 3, 10**6, 10**7, 2**31, 2**62, 10**100, float("nan"), float("inf"), -float("inf"),
                   0.0, -0.5, 1e-30, 1e38]
HOSTILE_VALUES = HOSTILE_NUMBERS + ["512", "", None, [], {}, True, [1, 2], {"a": 1}]


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
    for r, ch in sorted((int(k), v) for k, v in c["channels"].items()):
        block = f"synthesis.b{r}"
        modules[block] = "SynthesisBlock"
        fields[f"{block}:architecture"] = "skip"
        tensors[f"{block}.resample_filter"] = filt.clone()
        for layer in (["conv0"] if r > 4 else []) + ["conv1"]:
            modules[f"{block}.{layer}"] = "SynthesisLayer"
            fields.update({f"{block}.{layer}:conv_clamp": c["conv_clamp"], f"{block}.{layer}:use_noise": c["use_noise"],
                           f"{block}.{layer}:activation": "lrelu"})
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
    else:
        path.write_bytes(_nvlabs_bytes(doc))


# ---------------------------------------------------------------------------------- mutations
def _tensor_keys(doc: Doc) -> List[str]:
    """Keys of real tensors (not the stride-0 views a mutation planted: mutating those would materialise them)."""
    return [k for k, v in doc.tensors.items()
            if isinstance(v, torch.Tensor) and v.numel() * v.element_size() <= v.untyped_storage().nbytes()]


def _pick_tensor(doc: Doc, rng: random.Random) -> Optional[str]:
    keys = _tensor_keys(doc)
    return rng.choice(keys) if keys else None


def m_value(doc: Doc, rng: random.Random) -> None:
    key = _pick_tensor(doc, rng)
    if key is None:
        return
    t = doc.tensors[key].float()  # float16 files (encoders) would overflow on the scaling
    if not doc.tensors[key].is_floating_point() or t.numel() == 0:
        return
    kind = rng.choice(["nan", "inf", "-inf", "1e38", "1e20", "zero"])
    if kind in ("nan", "inf", "-inf"):
        t.view(-1)[rng.randrange(t.numel())] = float(kind)
    elif kind == "zero":
        t.zero_()
    else:
        t.mul_(float(kind)).clamp_(-3e38, 3e38)
    doc.tensors[key] = t
    doc.notes.append(f"{key} value {kind}")


def m_dtype(doc: Doc, rng: random.Random) -> None:
    key = _pick_tensor(doc, rng)
    if key is None:
        return
    dtype = rng.choice([torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.float16,
                        torch.float64, torch.bfloat16, torch.int8])
    if doc.fmt == "native" and dtype == torch.complex64:
        dtype = torch.int16  # safetensors has no complex dtype
    doc.tensors[key] = doc.tensors[key].to(dtype)
    doc.notes.append(f"{key} dtype {dtype}")


def m_shape(doc: Doc, rng: random.Random) -> None:
    key = _pick_tensor(doc, rng)
    if key is None:
        return
    t = doc.tensors[key]
    kind = rng.choice(["lead2", "drop", "add", "transpose", "shrink", "empty", "scalar", "grow"])
    if kind == "lead2":
        t = torch.cat([t, t]) if t.ndim and t.shape[0] == 1 else torch.stack([t, t])
    elif kind == "drop" and t.ndim >= 2:
        t = t.reshape(*t.shape[:-2], -1)
    elif kind == "drop" and t.ndim == 1 and t.numel():
        t = t[0].clone()
    elif kind == "add":
        t = t[..., None]
    elif kind == "transpose" and t.ndim >= 2:
        t = t.transpose(0, 1).contiguous()
    elif kind == "shrink" and t.ndim and t.shape[0] > 1:
        t = t[:-1].contiguous()
    elif kind == "empty":
        t = t.reshape(-1)[:0]
    elif kind == "scalar":
        t = t.reshape(-1)[:1].reshape([]).clone()
    elif kind == "grow":
        t = torch.cat([t, t], dim=-1) if t.ndim else t[None].repeat(2)
    doc.tensors[key] = t
    doc.notes.append(f"{key} shape {kind} -> {list(t.shape)}")


def m_stride0(doc: Doc, rng: random.Random) -> None:
    if doc.fmt == "native":  # safetensors stores data, not views: writing would materialise it
        return m_shape(doc, rng)
    key = _pick_tensor(doc, rng) or "junk"
    size = rng.choice([[65536, 65536], [2**20, 2**20], [2**31], [512, 512, 3, 3, 1000]])
    doc.tensors[key] = torch.zeros(1).expand(*size) if len(size) > 1 else torch.zeros(1).expand(size[0])
    doc.notes.append(f"{key} stride-0 view of shape {size}")


def m_keys(doc: Doc, rng: random.Random) -> None:
    kind = rng.choice(["delete", "add-huge-index", "add-junk", "rename"])
    key = _pick_tensor(doc, rng)
    if kind == "delete" and key:
        del doc.tensors[key]
    elif kind == "rename" and key:
        doc.tensors[key + "_x"] = doc.tensors.pop(key)
    elif kind == "add-huge-index":
        name = {"native": "mapping.fc10000000.weight", "nvlabs": "synthesis.b1048576.conv1.weight"}.get(
            doc.fmt, rng.choice(["style.10000000.weight", "to_rgbs.10000000.conv.weight", "convs.999999.conv.weight"]))
        doc.tensors[name] = torch.randn(4, 4)
        key = name
    else:
        key = rng.choice(["junk", "noises.noise_99", "mapping.extra.weight", "input.extra"])
        doc.tensors[key] = torch.randn(3)
    doc.notes.append(f"key {kind} {key}")


def m_non_tensor(doc: Doc, rng: random.Random) -> None:
    key = _pick_tensor(doc, rng)
    if key is None or doc.fmt == "native":  # safetensors holds tensors only
        return m_value(doc, rng)
    doc.tensors[key] = rng.choice([3, "weights", [1.0, 2.0], None, {"a": torch.ones(1)}, 1.5])
    doc.notes.append(f"{key} non-tensor")


def m_field(doc: Doc, rng: random.Random) -> None:
    if not doc.fields:
        return
    key = rng.choice(sorted(doc.fields))
    old = doc.fields[key]
    if isinstance(old, torch.Tensor):  # latent_avg
        w = old.shape[-1]
        new: object = rng.choice([torch.randn(18, w), torch.randn(w + 1), torch.full([w], float("nan")),
                                  torch.randn(2, 3, w), torch.randn(w).to(torch.int32), torch.zeros(0), 5])
    elif key.endswith("resample_taps"):
        new = rng.choice([[], [0, 0, 0, 0], [1, 2, 1], [float("nan")] * 4, [1] * 10**4, [1, -3, 3, -1], "1331",
                          [1, 3, 3, 1, 1, 3]])
    elif key.endswith("channels"):
        new = dict(old) if isinstance(old, dict) else {}
        if new:
            new[rng.choice(sorted(new))] = rng.choice(HOSTILE_VALUES)
    elif key.endswith("_init_kwargs"):
        new = copy.deepcopy(old)
        sub = rng.choice(["z_dim", "w_dim", "img_resolution", "img_channels", "c_dim", "mapping_kwargs",
                          "synthesis_kwargs"])
        if sub == "mapping_kwargs":
            new[sub] = {"num_layers": rng.choice(HOSTILE_VALUES)}
        elif sub == "synthesis_kwargs":
            new[sub] = rng.choice([{"architecture": "resnet"}, {"architecture": None}, "skip", 7])
        else:
            new[sub] = rng.choice(HOSTILE_VALUES)
    else:
        new = rng.choice(HOSTILE_VALUES + ["relu", "linear", "lrelu"])
    doc.fields[key] = new
    doc.notes.append(f"field {key} = {new if not isinstance(new, torch.Tensor) else list(new.shape)}")


def m_structure(doc: Doc, rng: random.Random) -> None:
    if doc.fmt == "native":
        kind = rng.choice(["deep-json", "garbage", "not-object", "missing"])
        doc.extra["raw_config"] = {"deep-json": "[" * 100_000 + "]" * 100_000, "garbage": "{\"z_dim\": 8,",
                                   "not-object": "[1, 2, 3]", "missing": "null"}[kind]
        doc.notes.append(f"config {kind}")
    elif doc.fmt == "nvlabs":
        doc.extra["deep_records"] = rng.choice([50, 2000])
        if rng.random() < 0.5:
            path = rng.choice(sorted(doc.modules))
            doc.modules[path] = rng.choice(["StyleGAN3Layer", "Generator", "", "x" * 1000])
        doc.notes.append(f"structure deep records {doc.extra['deep_records']}")
    else:
        doc.extra["deep_dict"] = rng.choice([100, 900])
        doc.notes.append(f"structure deep dict {doc.extra['deep_dict']}")


OBJECT_MUTATIONS = (m_value, m_dtype, m_shape, m_stride0, m_keys, m_non_tensor, m_field, m_field, m_structure)


def mutate_bytes(data: bytes, rng: random.Random) -> tuple:
    kind = rng.choice(["truncate", "flip", "zero-run", "append"])
    b = bytearray(data)
    if kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind == "flip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "zero-run":
        i = rng.randrange(len(b))
        n = rng.randint(1, 4096)
        b[i:i + n] = bytes(len(b[i:i + n]))
    else:
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(b), f"bytes {kind}"


# ---------------------------------------------------------------------------------- mutants
@dataclass
class Mutant:
    name: str
    fmt: str
    description: str


def make_mutants(n: int, seed: int, folder: Path) -> List[Mutant]:
    """Write `n` mutants (formats in turn) into `folder`; returns what each one is."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        fmt = FORMATS[i % len(FORMATS)]
        G = small_generator(rng)
        while fmt != "native" and fmt != "nvlabs" and not _rosinality_able(G):
            G = small_generator(rng)
        doc = make_doc(G, fmt)
        path = folder / f"m{i:05d}_{fmt}"
        byte_level = rng.random() < 0.2
        if not byte_level:
            for _ in range(rng.choice([1, 1, 2, 3])):
                rng.choice(OBJECT_MUTATIONS)(doc, rng)
        try:
            write_doc(doc, path)
        except Exception as e:  # a mutation the format cannot even store: store the unmutated file instead
            doc = make_doc(G, fmt)
            doc.notes = [f"unwritable mutation ({type(e).__name__}); byte damage instead"]
            write_doc(doc, path)
            byte_level = True
        if byte_level:
            data, note = mutate_bytes(path.read_bytes(), rng)
            path.write_bytes(data)
            doc.notes.append(note)
        out.append(Mutant(path.name, fmt, "; ".join(doc.notes) or "none"))
    return out


def _config_leaves(config: object, trail: tuple = ()) -> List[tuple]:
    if isinstance(config, dict):
        return [t for k, v in config.items() for t in _config_leaves(v, trail + (k,))]
    if isinstance(config, list):
        return [t for i, v in enumerate(config) for t in _config_leaves(v, trail + (i,))]
    return [trail] if trail else []


def make_storage_mutants(source: Path, n: int, seed: int, folder: Path) -> List[Mutant]:
    """`n` mutants of one safetensors file of the storage layer (an encoder, a head, a discriminator).

    Header mutations set one config value to a hostile one (or nest it deeply); tensor mutations reuse
    the generator families (values, dtypes, shapes, keys); a fifth are byte-level damage.
    """
    from safetensors import safe_open
    rng = random.Random(seed)
    with safe_open(str(source), framework="pt") as f:
        header = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    out = []
    for i in range(n):
        doc = Doc("native", dict(tensors), {})
        meta = dict(header)
        kind = rng.choice(["header", "tensor", "tensor", "bytes"])
        if kind == "header":
            config = json.loads(meta["config"])
            leaves = _config_leaves(config)
            if leaves and rng.random() < 0.8:
                trail = rng.choice(leaves)
                node = config
                for step in trail[:-1]:
                    node = node[step]
                node[trail[-1]] = rng.choice(HOSTILE_VALUES)
                doc.notes.append(f"config {'.'.join(map(str, trail))} = {node[trail[-1]]!r}")
                meta["config"] = json.dumps(config, allow_nan=True)
            else:
                meta["config"] = "[" * 50_000 + "]" * 50_000
                doc.notes.append("config nested 50,000 deep")
        elif kind == "tensor":
            rng.choice((m_value, m_dtype, m_shape, m_keys))(doc, rng)
        path = folder / f"s{i:05d}"
        try:
            save_file({k: v.contiguous() for k, v in doc.tensors.items()}, str(path), metadata=meta)
        except Exception as e:
            save_file(tensors, str(path), metadata=header)
            doc.notes.append(f"unwritable mutation ({type(e).__name__})")
            kind = "bytes"
        if kind == "bytes":
            data, note = mutate_bytes(path.read_bytes(), rng)
            path.write_bytes(data)
            doc.notes.append(note)
        out.append(Mutant(path.name, "storage", "; ".join(doc.notes)))
    return out


# ---------------------------------------------------------------------------------- the sandboxed worker
def _load_other(kind: str, path: str) -> None:
    """Load a non-generator file of the storage layer ('encoder' or 'discriminator')."""
    if kind == "encoder":
        from encoders import load_encoder
        load_encoder(path)
    elif kind == "discriminator":
        from latentspaces.discriminator import load_discriminator
        load_discriminator(path)
    else:
        raise ValueError(f"unknown reader {kind!r}")


def _classify(line: str) -> dict:
    import latentspaces as ls
    from latentspaces.errors import CheckpointError
    from latentspaces.generator.config import ConfigError, check_config
    kind, _, path = line.rpartition("::")  # 'encoder::path' loads with another reader of the storage layer
    try:
        if kind:
            _load_other(kind, path)
            return {"outcome": "loaded", "detail": ""}
        G = ls.load_generator(path)
    except CheckpointError as e:
        return {"outcome": "safety-net" if getattr(e, "safety_net", False) else "refused", "detail": str(e)[:300]}
    except MemoryError as e:
        return {"outcome": "memory", "detail": f"MemoryError {e}"[:300]}
    except Exception as e:
        memory = isinstance(e, RuntimeError) and "allocate" in str(e)
        return {"outcome": "memory" if memory else "other", "detail": f"{type(e).__name__}: {e}"[:300]}
    try:
        check_config(G.config)
        with torch.no_grad():
            images = G(torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(1)))
        finite = bool(torch.isfinite(images).all()) and bool(torch.isfinite(G.w_avg).all())
    except ConfigError as e:
        return {"outcome": "non-finite", "detail": f"invalid config: {e}"[:300]}
    return {"outcome": "loaded" if finite else "non-finite", "detail": "" if finite else "non-finite images"}


class _Timeout(BaseException):
    pass


def worker(limit_mb: int, timeout: float) -> None:
    """Read mutant paths from stdin, print one JSON line per path (outcome, detail)."""
    importlib.import_module("latentspaces")  # import before the limit: torch maps a lot of address space
    mapped = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + limit_mb * 2**20, resource.RLIM_INFINITY))
    torch.set_num_threads(1)

    def alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, alarm)
    for line in sys.stdin:
        path = line.strip()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            result = _classify(path)
        except _Timeout:
            result = {"outcome": "hang", "detail": f"over {timeout} s"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        print(json.dumps({"file": path.rpartition("::")[2], **result}), flush=True)


def run_mutants(paths: Sequence[Path], limit_mb: int = 2048, timeout: float = 20.0,
                reader: str = "generator") -> Dict[str, dict]:
    """Load every path in a sandboxed worker (restarted after a crash or a hang); {file name: result}.

    reader: 'generator' (ls.load_generator), 'encoder' (encoders.load_encoder) or 'discriminator'.
    """
    results: Dict[str, dict] = {}
    pending = [str(p) if reader == "generator" else f"{reader}::{p}" for p in paths]
    while pending:
        cmd = [sys.executable, "-m", "experiments.tools.fuzz_checkpoints", "--worker", "--limit-mb", str(limit_mb),
               "--timeout", str(timeout)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, cwd=Path(__file__).resolve().parents[2])
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        proc.stdin.write("".join(p + "\n" for p in pending))
        proc.stdin.close()
        done, hung = 0, False
        wait = timeout * 3 + 60  # the first file also pays for importing torch
        while done < len(pending):
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:  # the worker's own alarm did not fire: kill it
                proc.kill()
                hung = True
                break
            if line is None:
                break
            record = json.loads(line)
            results[Path(record.pop("file")).name] = record
            done += 1
            wait = timeout * 3
        proc.wait()
        if done < len(pending):  # the worker died (or hung past its own alarm) on pending[done]
            outcome = "hang" if hung else "memory"
            name = Path(pending[done].rpartition("::")[2]).name
            results[name] = {"outcome": outcome, "detail": f"worker exited with {proc.returncode}"}
            done += 1
        pending = pending[done:]
    return results


@dataclass
class Report:
    counts: Dict[str, int]
    by_format: Dict[str, Dict[str, int]]
    failures: List[dict]

    @property
    def tried(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return f"tried {self.tried}: " + ", ".join(f"{k} {self.counts[k]}" for k in OUTCOMES)


def fuzz(n: int, seed: int, limit_mb: int = 2048, timeout: float = 20.0, batch: int = 250,
         progress: Optional[Callable[[int], None]] = None) -> Report:
    """Make and load `n` mutants (in batches, in a temporary folder) and count the outcomes."""
    counts = {k: 0 for k in OUTCOMES}
    by_format = {f: {k: 0 for k in OUTCOMES} for f in FORMATS}
    failures: List[dict] = []
    with tempfile.TemporaryDirectory(prefix="ls-fuzz-") as tmp:
        for start in range(0, n, batch):
            folder = Path(tmp) / f"batch{start}"
            folder.mkdir()
            mutants = make_mutants(min(batch, n - start), seed * 1_000_003 + start, folder)
            results = run_mutants([folder / m.name for m in mutants], limit_mb, timeout)
            for m in mutants:
                r = results[m.name]
                counts[r["outcome"]] += 1
                by_format[m.fmt][r["outcome"]] += 1
                if r["outcome"] in FAILURES:
                    failures.append({"mutant": m.name, "mutations": m.description, **r})
            for p in folder.iterdir():
                p.unlink()
            if progress:
                progress(min(start + batch, n))
    return Report(counts, by_format, failures)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.tools.fuzz_checkpoints", description=__doc__.split("\n")[0])
    p.add_argument("--mutants", type=int, default=2000, help="how many mutants (formats in turn)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--limit-mb", type=int, default=2048, help="address space a load may add, MiB")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds one load may take")
    p.add_argument("--out", type=Path, help="write the report (counts, failures) as JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.limit_mb, args.timeout)
        return 0
    if args.mutants < 1:
        p.error(f"--mutants must be at least 1, got {args.mutants}")
    t0 = time.time()
    report = fuzz(args.mutants, args.seed, args.limit_mb, args.timeout,
                  progress=lambda k: print(f"  {k}/{args.mutants} mutants, {time.time() - t0:.0f} s", flush=True))
    print(f"{'format':<18}" + "".join(f"{k:>11}" for k in OUTCOMES))
    for fmt, row in report.by_format.items():
        print(f"{fmt:<18}" + "".join(f"{row[k]:>11}" for k in OUTCOMES))
    for f in report.failures[:20]:
        print(f"FAIL {f['mutant']}: {f['outcome']}: {f['detail']}  [{f['mutations']}]")
    if args.out:
        record = {"seed": args.seed, "counts": report.counts, "by_format": report.by_format, "failures": report.failures}
        atomic_write_text(args.out, json.dumps(record, indent=1))
    print(report.summary() + f" ({time.time() - t0:.0f} s)")
    return 1 if any(report.counts[k] for k in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
