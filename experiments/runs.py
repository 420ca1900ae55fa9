"""Run folders: the files an experiment leaves in OUT, written so that a run resumes and never mixes.

One module for every experiment's plumbing:

- CSV rows: `read_rows`, `write_rows` (a whole file, atomically), `append_rows` (whole rows under a
  POSIX file lock, so ranks of one sharded run append exactly one header).
- The settings behind OUT: `claim_out_dir` records them with the targets' fingerprints in
  `SETTINGS_FILE` (or refuses a rerun with other ones); `write_settings` rewrites them atomically.
- Chunk code files, codes/{Space}_{start}.safetensors: `save_chunk`, `chunk_path`, `load_codes`
  (the latentspaces.code format; files of earlier runs, without a format header, still load).
- Image files of a run (uint8 [N, 3, R, R]): `save_image_file`, `load_image_file`.
- Summaries: `mean_std_rows` (mean and std per space or method), `write_summary` (their CSV),
  `write_mean_std_table` (CSV + Markdown table of 'mean ± std' cells, `plus_minus`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch

from latentspaces.io import IMAGES_FORMAT, atomic_path, atomic_write_text, load_tensors, save_tensors, to_uint8
from latentspaces.spaces import Code, read_code_file

try:  # file locks for sharded runs; absent on Windows, where runs are single-process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SETTINGS_FILE = "inversion_settings.json"


# ---------------------------------------------------------------------------------- CSV rows
def read_rows(path: Path) -> List[dict]:
    """The rows of a CSV as dicts of strings ([] when the file does not exist)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_rows(path: Path, rows: List[dict], fields: Sequence[str]) -> None:
    """Append rows to a CSV (header when empty) and flush: finished work is on disk before the next starts.

    The file is locked while it is written (POSIX), so processes sharding one run (`experiments.distributed`)
    append whole rows and exactly one header.
    """
    with open(path, "a", newline="") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            w = csv.DictWriter(f, fieldnames=list(fields))
            if f.seek(0, io.SEEK_END) == 0:
                w.writeheader()
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def write_rows(path: Path, rows: List[dict], fields: Sequence[str]) -> None:
    """Rewrite a CSV atomically: a killed run leaves the old file or the new one."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)


def write_summary(path: Path, rows: List[dict], key: str) -> None:
    """Rewrite a summary CSV whose columns are those of its first row (just `key` when there are none)."""
    write_rows(path, rows, list(rows[0]) if rows else [key])


# ---------------------------------------------------------------------------------- settings and fingerprints
def target_fingerprints(targets: torch.Tensor) -> List[str]:
    """Per target [3, R, R] in [-1, 1]: the first 16 hex digits of the sha256 of its uint8 pixels."""
    return [hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16] for t in to_uint8(targets)]


def generator_fingerprint(G: torch.nn.Module) -> str:
    """The first 16 hex digits of the sha256 over G's parameters and buffers (names and values)."""
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def write_settings(path: Path, settings: Dict[str, object]) -> None:
    """Write the settings file (JSON) atomically."""
    atomic_write_text(path, json.dumps(settings, indent=1))


def read_settings(out: Path) -> Dict[str, object]:
    """The settings recorded in OUT by `claim_out_dir`; FileNotFoundError naming the file when there are none."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out} holds no inversions made by compare or identity-curves")
    return json.loads(path.read_text())


def claim_out_dir(out: Path, settings: Dict[str, object], targets: torch.Tensor) -> None:
    """Record the inversion settings and targets [N, 3, R, R] behind OUT, or check that a resumed run uses the same.

    `compare` and `identity-curves` share the inversions in one OUT and resume them per chunk, so a run
    with other settings or other targets would silently mix results; it is refused instead. A later run
    may use fewer or more targets than an earlier one as long as the targets they share are the same.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / SETTINGS_FILE
    prints = target_fingerprints(targets)
    if path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            said = ", ".join(f"{k}={a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise ValueError(f"{out} holds inversions made with other settings ({said}); resume with the "
                             f"same settings or choose another output folder")
        known = old.get("targets", [])
        for i, (a, b) in enumerate(zip(known, prints)):
            if a != b:
                raise ValueError(f"target {i} is not the image inverted as target {i} in {out} "
                                 f"(pixel sha256 {b} vs {a}); choose another output folder")
        if len(prints) <= len(known):
            return
    write_settings(path, {**settings, "targets": prints})


# ---------------------------------------------------------------------------------- chunk code files
def chunk_path(out: Path, space: str, start: int) -> Path:
    """codes/{space}_{start}.safetensors: the codes of targets start, start + 1, ... in one space."""
    return out / "codes" / f"{space}_{start}.safetensors"


def save_chunk(out: Path, space: str, start: int, code: Code, images: torch.Tensor, steps: int) -> None:
    """Write one chunk's codes [n, ...] and their reconstructions [n, 3, R, R] in [-1, 1] (stored uint8)."""
    path = chunk_path(out, space, start)
    path.parent.mkdir(parents=True, exist_ok=True)
    code.save(path, space=space, images=to_uint8(images), start=start, steps=steps)


def _chunk_start(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def load_codes(out: Path, space: str, n: int, device: str | torch.device = "cpu") -> Code:
    """The optimized codes [n, ...] of the first `n` targets in one space, from the chunk files in OUT."""
    parts = sorted((out / "codes").glob(f"{space}_*.safetensors"), key=_chunk_start)
    loaded = [read_code_file(p, device) for p in parts]
    sizes = [len(f.code) for f in loaded]
    if sum(sizes) < n or [_chunk_start(p) for p in parts] != [sum(sizes[:i]) for i in range(len(parts))]:
        raise ValueError(f"{out / 'codes'} holds no contiguous {space} codes for {n} targets (found {sum(sizes)}); "
                         "run the inversions first (invert_missing)")
    code = Code.cat([f.code for f in loaded])
    return Code(**{k: code[k][:n] for k in code.fields})


# ---------------------------------------------------------------------------------- image files
def save_image_file(path: Path, images: torch.Tensor, **header: object) -> None:
    """Write images [N, 3, R, R] in [-1, 1] as uint8 (format latentspaces.images), atomically."""
    save_tensors(path, {"images": to_uint8(images)}, IMAGES_FORMAT, 1, **header)


def load_image_file(path: Path) -> torch.Tensor:
    """The uint8 images [N, 3, R, R] of a file written by `save_image_file` (or by earlier runs, headerless)."""
    tensors, _ = load_tensors(path)
    return tensors["images"]


# ---------------------------------------------------------------------------------- summaries
def mean_std_rows(rows: List[dict], key: str, names: Sequence[str], metrics: Sequence[str]) -> List[dict]:
    """Per name (rows with row[key] == name, in `names` order): n, and mean and std of each metric.

    The mean of 'seconds' is reported as 'seconds_per_image' (and its std as 'seconds_per_image_std').
    """
    summary = []
    for name in names:
        mine = [r for r in rows if r[key] == name]
        if not mine:
            continue
        row = {key: name, "n": len(mine)}
        for k in metrics:
            v = torch.tensor([float(r[k]) for r in mine], dtype=torch.float64)
            col = "seconds_per_image" if k == "seconds" else k
            row[col] = float(v.mean())
            row[f"{col}_std"] = float(v.std()) if len(v) > 1 else 0.0
        summary.append(row)
    return summary


def plus_minus(row: dict, key: str, fmt: str) -> str:
    """'mean ± std' of a summary row from `mean_std_rows`, both in `fmt`."""
    return f"{row[key]:{fmt}} ± {row[key + '_std']:{fmt}}"


def write_mean_std_table(out: Path, stem: str, summary: List[dict], key: str,
                         columns: Sequence[Tuple[str, str, str, bool]]) -> None:
    """{stem}.csv (every field of the `mean_std_rows` rows) and {stem}.md, both atomically.

    The Markdown table has a column `key`, then n, then one per (title, field, format, spread): 'mean ± std'
    when spread, else the mean alone.
    """
    write_summary(out / f"{stem}.csv", summary, key)
    lines = ["| " + " | ".join([key, "n", *(c[0] for c in columns)]) + " |",
             "| --- | ---: |" + " ---: |" * len(columns)]
    for r in summary:
        cells = [plus_minus(r, field, fmt) if spread else f"{r[field]:{fmt}}" for _, field, fmt, spread in columns]
        lines.append("| " + " | ".join([str(r[key]), str(r["n"]), *cells]) + " |")
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")


__all__ = ["SETTINGS_FILE", "append_rows", "chunk_path", "claim_out_dir", "generator_fingerprint",
           "load_codes", "load_image_file", "mean_std_rows", "plus_minus", "read_rows", "read_settings", "save_chunk",
           "save_image_file", "target_fingerprints", "write_mean_std_table", "write_rows", "write_settings",
           "write_summary"]
