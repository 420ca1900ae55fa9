"""The fuzzer's other file families: direction files and code files, written whole and then damaged.

`make_direction_mutants` writes the direction files `load_directions` reads (a [D] or [L, D] tensor and a
GANSpace dict as torch.save files, the project's safetensors format) and damages each one: views that
would expand to gigabytes (stride 0, expanded), sparse or meta tensors, integer or complex dtypes,
non-finite values, other shapes, non-tensor values, a GANSpace dict whose std does not match its
components, header metadata missing, not a list or not JSON, compressed zip records and byte damage.
`make_code_mutants` does the same for code files (`read_code_file`): header fields of the wrong type,
non-finite or integer codes, batches that disagree, no codes, and byte damage. The same seed gives the
same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from experiments.tools.fuzzing.mutations import Mutant, mutate_bytes


def _tensor_damage(t: torch.Tensor, rng: random.Random) -> tuple:
    """(damaged tensor, note): a family of damage a tensor read from a user's file can carry."""
    kind = rng.choice(["stride0", "expand", "sparse", "meta", "int", "complex", "nan", "inf", "3d", "empty", "huge"])
    if kind == "stride0":
        return torch.zeros(1).expand(2**20, 2**13), "stride-0 view [2^20, 2^13] (34 GB expanded)"
    if kind == "expand":
        return t.reshape(1, -1).expand(10**6, t.numel()), "expanded view of 10^6 rows"
    if kind == "sparse":
        return t.to_sparse(), "sparse tensor"
    if kind == "meta":
        return torch.empty(t.shape, device="meta"), "meta tensor (no data)"
    if kind == "int":
        return t.to(torch.int64), "int64 dtype"
    if kind == "complex":
        return t.to(torch.complex64), "complex dtype"
    if kind in ("nan", "inf"):
        t = t.clone()
        t.view(-1)[0] = float(kind)
        return t, f"one {kind}"
    if kind == "3d":
        return t.reshape(1, 1, -1).repeat(2, 3, 1), "shape [2, 3, D]"
    if kind == "empty":
        return t.reshape(-1)[:0], "empty"
    return t * 1e38, "values of 1e38"


def make_direction_mutants(n: int, seed: int, folder: Path) -> List[Mutant]:
    """`n` damaged direction files in `folder` (names d00000, ...), the kinds in turn."""
    from latentspaces.directions import Direction
    from latentspaces.directions.io import save_directions
    rng = random.Random(seed)
    out = []
    for i in range(n):
        path = folder / f"d{i:05d}"
        d = rng.choice([8, 64, 512])
        kind = ("tensor", "layered", "ganspace", "own")[i % 4]
        notes = [kind]
        if kind == "own":
            save_directions(path, [Direction(torch.randn(d), "w", name=f"x{k}", method="fuzz") for k in range(2)])
            if rng.random() < 0.7:
                with safe_open(str(path), framework="pt") as f:
                    meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
                what = rng.choice(["no-meta", "not-list", "not-json", "not-objects", "bad-kind", "tensor"])
                if what == "no-meta":
                    meta.pop("directions")
                elif what == "not-list":
                    meta["directions"] = json.dumps({"kind": "w"})
                elif what == "not-json":
                    meta["directions"] = "[{\"kind\": "
                elif what == "not-objects":
                    meta["directions"] = json.dumps([1, "w"])
                elif what == "bad-kind":
                    meta["directions"] = json.dumps([{"kind": "q", "name": "a"}, {"kind": "w"}])
                else:
                    tensors["direction_0"] = rng.choice([torch.full([d], float("nan")), torch.zeros(d, dtype=torch.int32),
                                                         torch.randn(2, 3, d), torch.zeros(0)])
                notes.append(what)
                save_file(tensors, str(path), metadata=meta)
        else:
            obj: object
            if kind == "tensor":
                obj = torch.randn(d)
            elif kind == "layered":
                obj = torch.randn(rng.choice([10, 18]), d)
            else:
                obj = {"comp": torch.randn(5, 1, d), "std": torch.rand(5) + 0.5, "mean": torch.randn(1, d)}
            if rng.random() < 0.75:
                if isinstance(obj, dict):
                    key = rng.choice(["comp", "std", "mean", "std-length", "non-tensor"])
                    if key == "std-length":
                        obj["std"], note = torch.rand(7), "std of 7 for 5 components"
                    elif key == "non-tensor":
                        obj["comp"], note = [[1.0] * d], "comp is a list"
                    else:
                        obj[key], note = _tensor_damage(obj[key], rng)
                        note = f"{key}: {note}"
                else:
                    obj, note = _tensor_damage(obj, rng)
                notes.append(note)
            torch.save(obj, str(path))
        if rng.random() < 0.2:
            data, note = mutate_bytes(path.read_bytes(), rng)
            path.write_bytes(data)
            notes.append(note)
        out.append(Mutant(path.name, "directions", "; ".join(notes)))
    return out


def make_code_mutants(n: int, seed: int, folder: Path) -> List[Mutant]:
    """`n` damaged code files in `folder` (names c00000, ...)."""
    from latentspaces.spaces.code import Code
    rng = random.Random(seed)
    out = []
    for i in range(n):
        path = folder / f"c{i:05d}"
        Code(w=torch.randn(2, 8, 16)).save(path, space="WPlus", images=torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8))
        notes: List[str] = []
        kind = rng.choice(["header", "header", "tensor", "tensor", "bytes"])
        if kind != "bytes":
            with safe_open(str(path), framework="pt") as f:
                meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
            if kind == "header":
                field = rng.choice(["meta", "space", "generator_fingerprint", "format", "version"])
                meta[field] = rng.choice(["[1, 2]", "3", "null", "\"x\"", "{\"a\": ", "[" * 5000 + "]" * 5000])
                notes.append(f"header {field} = {meta[field][:20]}")
            else:
                damage: Dict[str, torch.Tensor] = {}
                what = rng.choice(["nan", "int", "batch", "1d", "none", "images"])
                if what == "nan":
                    damage["code.w"] = torch.full([2, 8, 16], float("nan"))
                elif what == "int":
                    damage["code.w"] = torch.zeros(2, 8, 16, dtype=torch.int64)
                elif what == "batch":
                    damage["code.z"] = torch.randn(3, 16)
                elif what == "1d":
                    damage["code.w"] = torch.randn(16)
                elif what == "none":
                    tensors.pop("code.w")
                else:
                    damage["images"] = rng.choice([torch.randn(5, 3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.int64), torch.rand(2, 3, 8, 8)])
                tensors.update(damage)
                notes.append(f"tensors {what}")
            save_file(tensors, str(path), metadata=meta)
        else:
            data, note = mutate_bytes(path.read_bytes(), rng)
            path.write_bytes(data)
            notes.append(note)
        out.append(Mutant(path.name, "codes", "; ".join(notes)))
    return out


__all__ = ["make_code_mutants", "make_direction_mutants"]
