"""The mutation operators of the checkpoint fuzzer, and the seeded mutants they make.

Object-level operators (`m_value` ... `m_structure`, drawn from `OBJECT_MUTATIONS`) damage a `Doc`
before it is written: values, dtypes, shapes, stride-0 views, keys, non-tensor values, declared fields
and nesting depth; `mutate_bytes` damages a written file. `make_mutants` writes generator mutants, the
formats in turn, and `make_storage_mutants` mutates one safetensors file of the storage layer; the same
seed gives the same mutants.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch
from safetensors.torch import save_file

from experiments.tools.fuzzing.documents import FORMATS, Doc, _rosinality_able, make_doc, small_generator, write_doc

HOSTILE_NUMBERS = [0, -1, 1, 3, 10**6, 10**7, 2**31, 2**62, 10**100, float("nan"), float("inf"), -float("inf"),
                   0.0, -0.5, 1e-30, 1e38]
HOSTILE_VALUES = HOSTILE_NUMBERS + ["512", "", None, [], {}, True, [1, 2], {"a": 1}]


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
    kind = rng.choice(["nan", "inf", "-inf", "1e38", "1e20", "zero", "1e3", "1e6"])  # 1e3, 1e6: finite, within bounds
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
    if doc.fmt == "native" and rng.random() < 0.4:   # a plausible gain with an absurd effect
        doc.fields["config.mapping_lr_multiplier"] = rng.choice([10.0, 100.0])
        doc.notes.append(f"config.mapping_lr_multiplier = {doc.fields['config.mapping_lr_multiplier']}")
    elif doc.fmt == "native":
        kind = rng.choice(["deep-json", "garbage", "not-object", "missing"])
        doc.extra["raw_config"] = {"deep-json": "[" * 100_000 + "]" * 100_000, "garbage": "{\"z_dim\": 8,",
                                   "not-object": "[1, 2, 3]", "missing": "null"}[kind]
        doc.notes.append(f"config {kind}")
    elif doc.fmt == "nvlabs":
        kind = rng.choice(["chain", "dag", "rename", "rename", "attribute", "attribute", "gain"])
        if kind == "chain":
            doc.extra["deep_records"] = rng.choice([50, 2000])
        elif kind == "dag":   # records shared by both children at every level: 2^levels paths in a few KB
            doc.extra["dag_levels"] = rng.choice([20, 40])
        elif kind == "rename":   # a record's class name edited: its checks must not be skipped
            path = rng.choice(sorted(doc.modules))
            doc.modules[path] = rng.choice(["StyleGAN3Layer", "Generator", "", "x" * 120_000, "SynthesisLayer",
                                            "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer"])
        elif kind == "attribute":   # plausible values NVlabs' forward would compute with differently
            layer = rng.choice([k.split(":")[0] for k in doc.fields if k.endswith(":conv_clamp")])
            attr, value = rng.choice([("act_gain", 1.0), ("act_gain", 2.0), ("padding", 0), ("padding", 2), ("up", 2),
                                      ("up", 1), ("architecture", "resnet"), ("architecture", "orig"),
                                      ("in_channels", 3), ("use_noise", "yes")])
            target = layer.rsplit(".", 1)[0] if attr in ("architecture", "in_channels") else layer
            doc.fields[f"{target}:{attr}"] = value
            kind = f"attribute {target}.{attr} = {value!r}"
        else:   # the mapping's gain raised consistently in every layer: finite, plausible per layer, absurd images
            scale = rng.choice([10.0, 100.0])
            for key in [k for k in doc.fields if k.startswith("mapping.fc") and k.endswith("_gain")]:
                doc.fields[key] = float(doc.fields[key]) * scale
            kind = f"mapping gains x{scale:g}"
        doc.notes.append(f"structure {kind}")
    else:
        doc.extra["deep_dict"] = rng.choice([100, 900])
        doc.notes.append(f"structure deep dict {doc.extra['deep_dict']}")


OBJECT_MUTATIONS = (m_value, m_dtype, m_shape, m_stride0, m_keys, m_non_tensor, m_field, m_field, m_structure)


def deflate_archive(data: bytes) -> bytes:
    """A torch.save zip archive rewritten with every record compressed (torch writes them stored)."""
    import io
    import zipfile
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, source.read(info.filename))
    return out.getvalue()


def mutate_bytes(data: bytes, rng: random.Random) -> tuple:
    kinds = ["truncate", "flip", "zero-run", "append"] + (["deflate"] * 2 if data[:4] == b"PK\x03\x04" else [])
    kind = rng.choice(kinds)
    if kind == "deflate":
        return deflate_archive(data), "bytes deflate (compressed zip records)"
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
        if fmt in ("rosinality", "e4e") and rng.random() < 0.05:
            out.append(_thin_and_huge(rng, fmt, folder / f"m{i:05d}_{fmt}"))
            continue
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


def _thin_and_huge(rng: random.Random, fmt: str, path: Path) -> Mutant:
    """A 15 KB rosinality-layout file of a genuine 4096 or 8192 px generator with one channel per layer and no
    noise maps: weights fit any budget, but building it allocates its noise buffers and rendering one image
    takes 0.6-2.5 GB."""
    import latentspaces as ls
    resolution = rng.choice([4096, 8192])
    G = ls.Generator(z_dim=8, w_dim=8, resolution=resolution, mapping_layers=1, conv_clamp=None,
                     channels={2**k: 1 for k in range(2, resolution.bit_length())}, mapping_lr_multiplier=0.01)
    doc = make_doc(G, fmt)
    doc.tensors = {k: v for k, v in doc.tensors.items() if not k.startswith("noises.")}
    write_doc(doc, path)
    return Mutant(path.name, fmt, f"{resolution} px, one channel per layer, no noise maps")


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
