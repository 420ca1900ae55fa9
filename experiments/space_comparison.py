"""Space comparison (seed 002, Table 1): invert a target set into every latent space and compare.

Writes into OUT:
  space_comparison_per_image.csv  one row per (space, target), appended as each chunk finishes
  space_comparison.csv            mean and std per space: mse, psnr, ssim, ms_ssim, perceptual, identity, seconds
  space_comparison.md             the same as a Markdown table
  reconstructions.png             targets (top row) and each space's reconstruction below
  codes/{Space}_{start}.safetensors  the optimized codes and uint8 reconstructions of each chunk
An interrupted run resumes: chunks whose rows are in the per-image CSV are not redone.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

import latentspaces as ls
from latentspaces.metrics.image import reconstruction_metrics
from optimizers import HybridInverter

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
    """Append rows to a CSV (header on creation) and flush: finished work is on disk before the next starts."""
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        if new:
            w.writeheader()
        w.writerows(rows)
        f.flush()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous()


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
    """Invert `targets` into each space (resumable per chunk); returns the summary rows."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "codes").mkdir(exist_ok=True)
    per_image = out / "space_comparison_per_image.csv"
    done = {(r["space"], int(r["target"])) for r in read_rows(per_image)}
    encoders = encoders or {}
    n = targets.shape[0]
    jobs = [(s, start) for s in spaces for start in range(0, n, chunk)
            if any((s, i) not in done for i in range(start, min(start + chunk, n)))]
    for name, start in tqdm(jobs, desc="space comparison", unit="chunk"):
        space = build_space(name, G, pn_stats)
        enc = encoders.get(name)
        inv = HybridInverter(space, steps=steps, lr=lr, lambda_per=lambda_per if perceptual else 0.0,
                             lambda_reg=lambda_reg if enc is not None else 0.0, perceptual=perceptual, encoder=enc)
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
    summary = summarize(out, spaces)
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


def summarize(out: Path, spaces: Sequence[str]) -> List[dict]:
    summary = mean_std_rows(read_rows(out / "space_comparison_per_image.csv"), "space", spaces, SUMMARY_METRICS)
    fields = list(summary[0]) if summary else ["space"]
    with open(out / "space_comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(summary)
    lines = ["| space | n | MSE | PSNR | SSIM | MS-SSIM | perceptual | identity | s / image |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in summary:
        def pm(k, fmt):
            return f"{r[k]:{fmt}} ± {r[k + '_std']:{fmt}}"
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


def load_codes(out: Path, name: str) -> Optional[Dict[str, torch.Tensor]]:
    """The optimized codes of a space from a finished comparison in `out` (chunks concatenated), or None."""
    parts = sorted((out / "codes").glob(f"{name}_*.safetensors"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not parts:
        return None
    loaded = [load_file(str(p)) for p in parts]
    keys = [k for k in loaded[0] if k.startswith("code.")]
    return {k[5:]: torch.cat([d[k] for d in loaded]) for k in keys}
