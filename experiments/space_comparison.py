"""Space comparison (seed 002, Table 1): invert a target set into every latent space and compare.

Writes into OUT:
  space_comparison_per_image.csv  one row per (space, target), appended as each chunk finishes
  space_comparison.csv            mean and std per space: mse, psnr, ssim, ms_ssim, perceptual, identity, seconds
  space_comparison.md             the same as a Markdown table
  reconstructions.png             targets (top row) and each space's reconstruction below
  codes/{Space}_{start}.safetensors  the optimized codes and uint8 reconstructions of each chunk
  inversion_settings.json         the settings and target fingerprints the codes belong to
An interrupted run resumes: chunks whose rows are in the per-image CSV are not redone. A rerun with
other settings or other targets into the same OUT is refused (`claim_out_dir`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

import latentspaces as ls
from latentspaces.metrics.image import reconstruction_metrics
from optimizers import HybridInverter

from .distributed import World

try:  # file locks for sharded runs; absent on Windows, where runs are single-process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SPACE_ORDER = ["Z", "ZPlus", "W", "WPlus", "S", "PN", "FWPlus", "FZ", "FZPlus"]
PER_IMAGE_FIELDS = ["space", "target", "mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "seconds"]
SUMMARY_METRICS = ["mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "seconds"]


def build_space(name: str, G, pn_stats: Optional[ls.PNStats] = None) -> ls.LatentSpace:
    if name not in ls.SPACES:
        raise ValueError(f"unknown space {name!r}; choose from {SPACE_ORDER}")
    if name == "PN":
        return ls.PN(G, stats=pn_stats)
    return ls.SPACES[name](G)


def read_rows(path: Path) -> List[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_rows(path: Path, rows: List[dict], fields: Sequence[str] = PER_IMAGE_FIELDS) -> None:
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
    """Rewrite a CSV atomically (a temporary file, then a rename): a killed run leaves the old or the new."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous()


SETTINGS_FILE = "inversion_settings.json"


def target_fingerprints(targets: torch.Tensor) -> List[str]:
    """Per target [3, R, R] in [-1, 1]: the first 16 hex digits of the sha256 of its uint8 pixels."""
    return [hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16] for t in to_uint8(targets)]


def generator_fingerprint(G) -> str:
    """The first 16 hex digits of the sha256 over G's parameters and buffers (names and values)."""
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def claim_out_dir(out: Path, settings: Dict[str, object], targets: torch.Tensor) -> None:
    """Record the inversion settings and targets behind OUT, or check that a resumed run uses the same ones.

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


def write_settings(path: Path, settings: Dict[str, object]) -> None:
    """Write inversion_settings.json atomically (a temporary file, then a rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=1))
    tmp.replace(path)


def invert_missing(
    out: Path,
    G,
    targets: torch.Tensor,                         # [N, 3, R, R] in [-1, 1]
    spaces: Sequence[str],
    steps: int,
    lr: float,
    lambda_per: float,
    lambda_reg: float,
    perceptual: Optional[Callable] = None,         # used in the loss (lambda_per > 0) and reported
    identity: Optional[Callable] = None,           # reported
    pn_stats: Optional[ls.PNStats] = None,
    encoders: Optional[Dict[str, object]] = None,  # space name -> encoder with init_code (else init='mean')
    chunk: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> None:
    """Invert every chunk of `targets` that OUT has no rows for, into each space, one chunk at a time.

    Each finished chunk leaves codes/{Space}_{start}.safetensors (codes and uint8 reconstructions)
    and its rows in space_comparison_per_image.csv, in that order, so a killed run loses at most the
    chunk in progress. Call `claim_out_dir` first. Under `torchrun` each rank inverts its round-robin
    share of the missing chunks (`experiments.distributed`); all ranks return when all chunks are done.
    """
    world = World.current()
    (out / "codes").mkdir(parents=True, exist_ok=True)
    per_image = out / "space_comparison_per_image.csv"
    done = {(r["space"], int(r["target"])) for r in read_rows(per_image)}
    encoders = encoders or {}
    n = targets.shape[0]
    jobs = [(s, start) for s in spaces for start in range(0, n, chunk)
            if any((s, i) not in done for i in range(start, min(start + chunk, n)))]
    world.barrier()  # every rank has listed the same missing chunks before any rank adds rows
    progress = progress and world.main
    for name, start in tqdm(world.shard(jobs), desc="inversions", unit="chunk", disable=not progress or not jobs):
        space = build_space(name, G, pn_stats)
        enc = encoders.get(name)
        inv = HybridInverter(space, steps=steps, lr=lr, lambda_per=lambda_per if perceptual else 0.0,
                             lambda_reg=lambda_reg if enc is not None else 0.0, perceptual=perceptual, encoder=enc,
                             progress=progress)
        x = targets[start : start + chunk]
        res = inv.invert(x, seed=seed, init="encoder" if enc is not None else "mean")
        m = reconstruction_metrics(res.images, x)
        with torch.no_grad():
            per = perceptual(res.images, x) if perceptual else torch.full((len(x),), math.nan)
        ident = identity(res.images, x) if identity else torch.full((len(x),), math.nan)
        save_file({**{f"code.{k}": v.cpu().contiguous() for k, v in res.code.items()}, "images": to_uint8(res.images)},
                  str(out / "codes" / f"{name}_{start}.safetensors"),
                  metadata={"space": name, "start": str(start), "steps": str(steps)})
        rows = [{"space": name, "target": start + i, **{k: f"{float(v[i]):.6g}" for k, v in m.items()},
                 "perceptual": f"{float(per[i]):.6g}", "identity": f"{float(ident[i]):.6g}",
                 "seconds": f"{res.seconds / len(x):.4g}"} for i in range(len(x))]
        append_rows(per_image, rows)
    world.barrier()


def fill_identity(
    out: Path,
    G,
    targets: torch.Tensor,                         # [N, 3, R, R] in [-1, 1]: the targets OUT was made with
    identity: Callable,                            # (images, targets) -> [N] similarities; has .name
    pn_stats: Optional[ls.PNStats] = None,         # the statistics P_N codes were inverted with
    progress: bool = True,
) -> int:
    """Score the rows of OUT's per-image CSV that have no identity (a run made with identity=None).

    For inversions made where the identity model is not installed (a GPU machine without dlib, say):
    each chunk's reconstructions are regenerated from its code file, as float images like the ones a
    run with the metric scores (not the saved uint8 copies), compared with their targets, and the CSV
    is rewritten atomically. Once no row lacks an identity, the settings record the metric, so that
    `compare --identity ...` resumes the folder. Returns the number of rows filled.
    """
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out} holds no inversions made by compare")
    settings = json.loads(path.read_text())
    name = getattr(identity, "name", type(identity).__name__)
    if settings.get("identity") not in ("none", name):
        raise ValueError(f"{out} was scored with identity {settings.get('identity')!r}, not {name!r}; "
                         "identities of two metrics would mix in one column")
    claim_out_dir(out, {k: v for k, v in settings.items() if k != "targets"}, targets)  # same targets?
    per_image = out / "space_comparison_per_image.csv"
    rows = read_rows(per_image)
    chunk = int(settings["chunk"])
    missing: Dict[tuple, List[dict]] = {}
    for r in rows:
        if math.isnan(float(r["identity"])):
            missing.setdefault((r["space"], int(r["target"]) // chunk * chunk), []).append(r)
    if any(int(r["target"]) >= targets.shape[0] for group in missing.values() for r in group):
        raise ValueError(f"{out} has rows for {1 + max(int(r['target']) for r in rows)} targets; "
                         f"pass at least that many (got {targets.shape[0]})")
    for (space_name, start), group in tqdm(sorted(missing.items()), desc="identity", unit="chunk",
                                           disable=not progress or not missing):
        saved = load_file(str(out / "codes" / f"{space_name}_{start}.safetensors"))
        space = build_space(space_name, G, pn_stats)
        code = ls.Code(**{k[5:]: v.to(targets.device) for k, v in saved.items() if k.startswith("code.")})
        with torch.no_grad():
            images = space.synthesize(code)
        # Up to 1/255 off where another device rounds a pixel the other way; more means another model.
        if (to_uint8(images).int() - saved["images"].int()).abs().max() > 1:
            raise ValueError(f"the {space_name} codes of chunk {start} in {out} do not regenerate the images saved "
                             "with them; score with the generator (and P_N statistics) they were inverted with")
        scores = identity(images, targets[start : start + len(images)])
        for r in group:
            r["identity"] = f"{float(scores[int(r['target']) - start]):.6g}"
    write_rows(per_image, rows, PER_IMAGE_FIELDS)
    if not any(math.isnan(float(r["identity"])) for r in rows) and settings.get("identity") != name:
        write_settings(path, {**settings, "identity": name})
    return sum(len(group) for group in missing.values())


def comparison_settings(G, steps: int, lr: float, lambda_per: float, lambda_reg: float,
                        perceptual: Optional[Callable], identity: Optional[Callable],
                        encoders: Optional[Dict[str, object]], chunk: int, seed: int) -> Dict[str, object]:
    """What decides the codes and the per-image rows of a run (recorded by `claim_out_dir`)."""
    def name(metric):
        return "none" if metric is None else getattr(metric, "name", type(metric).__name__)

    return {"generator": generator_fingerprint(G), "steps": steps, "lr": lr,
            "lambda_per": lambda_per if perceptual is not None else 0.0,
            "lambda_reg": lambda_reg if encoders else 0.0, "init": "encoder" if encoders else "mean",
            "perceptual": name(perceptual), "identity": name(identity), "chunk": chunk, "seed": seed}


def run_space_comparison(
    out: Path,
    G,
    targets: torch.Tensor,                         # [N, 3, R, R] in [-1, 1]
    spaces: Sequence[str] = SPACE_ORDER,
    steps: int = 1200,
    lr: float = 0.01,
    lambda_per: float = 10.0,
    lambda_reg: float = 10.0,
    perceptual: Optional[Callable] = None,         # used in the loss and reported
    identity: Optional[Callable] = None,           # reported
    pn_stats: Optional[ls.PNStats] = None,
    encoders: Optional[Dict[str, object]] = None,  # space name -> encoder with init_code (else init='mean')
    chunk: int = 8,
    seed: int = 0,
) -> List[dict]:
    """Invert `targets` into each space (resumable per chunk); returns the summary rows.

    Under `torchrun` the chunks are sharded over the ranks, and rank 0 writes the table and the grid
    (the other ranks return no rows).
    """
    world = World.current()
    world.main_first(lambda: claim_out_dir(out, comparison_settings(G, steps, lr, lambda_per, lambda_reg, perceptual,
                                                                    identity, encoders, chunk, seed), targets))
    invert_missing(out, G, targets, spaces, steps, lr, lambda_per, lambda_reg, perceptual, identity, pn_stats,
                   encoders, chunk, seed)
    if not world.main:
        return []
    summary = summarize(out, spaces, targets.shape[0])
    reconstruction_grid(out, targets, spaces)
    return summary


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


def summarize(out: Path, spaces: Sequence[str], n_targets: Optional[int] = None) -> List[dict]:
    """Mean and std per space over the first `n_targets` targets (all when None) -> CSV, Markdown, rows."""
    rows = read_rows(out / "space_comparison_per_image.csv")
    if n_targets is not None:
        rows = [r for r in rows if int(r["target"]) < n_targets]
    summary = mean_std_rows(rows, "space", spaces, SUMMARY_METRICS)
    write_rows(out / "space_comparison.csv", summary, list(summary[0]) if summary else ["space"])
    lines = ["| space | n | MSE | PSNR | SSIM | MS-SSIM | perceptual | identity | s / image |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in summary:
        def pm(k, fmt):
            return plus_minus(r, k, fmt)
        lines.append(f"| {r['space']} | {r['n']} | {pm('mse', '.4f')} | {pm('psnr', '.2f')} | {pm('ssim', '.3f')} | "
                     f"{pm('ms_ssim', '.3f')} | {pm('perceptual', '.3f')} | {pm('identity', '.3f')} | "
                     f"{r['seconds_per_image']:.2f} |")
    (out / "space_comparison.md").write_text("\n".join(lines) + "\n")
    return summary


def reconstruction_grid(out: Path, targets: torch.Tensor, spaces: Sequence[str], max_cols: int = 8) -> None:
    from torchvision.utils import save_image

    k = min(max_cols, targets.shape[0])
    rows = [to_uint8(targets[:k])]
    for name in spaces:
        path = out / "codes" / f"{name}_0.safetensors"
        if path.is_file():
            imgs = load_file(str(path))["images"][:k]
            if imgs.shape[0] == k:
                rows.append(imgs)
    grid = torch.cat(rows).float() / 255
    save_image(grid, str(out / "reconstructions.png"), nrow=k, padding=1)
    (out / "reconstructions.json").write_text(json.dumps({"rows": ["targets"] + [s for s in spaces
                                                          if (out / "codes" / f"{s}_0.safetensors").is_file()]}))


def load_codes(out: Path, name: str, n: int) -> Dict[str, torch.Tensor]:
    """The optimized codes of the first `n` targets in one space, from the chunk files in OUT."""
    parts = sorted((out / "codes").glob(f"{name}_*.safetensors"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    loaded = [load_file(str(p)) for p in parts]
    have = sum(len(d["images"]) for d in loaded)
    if have < n or [int(p.stem.rsplit("_", 1)[1]) for p in parts] != [sum(len(d["images"]) for d in loaded[:i])
                                                                      for i in range(len(loaded))]:
        raise ValueError(f"{out / 'codes'} holds no contiguous {name} codes for {n} targets (found {have}); "
                         "run the inversions first (invert_missing)")
    keys = [k for k in loaded[0] if k.startswith("code.")]
    return {k[5:]: torch.cat([d[k] for d in loaded])[:n] for k in keys}
