"""The inversions a run folder shares: made chunk by chunk, resumable, sharded, rescored.

`compare` (the space comparison) and `identity-curves` invert the same targets into the same spaces
with the same settings; whichever runs first into OUT makes each chunk once:

  codes/{Space}_{start}.safetensors  the optimized codes and uint8 reconstructions of each chunk
  space_comparison_per_image.csv     one row per (space, target), appended as each chunk finishes
  inversion_settings.json            the settings and target fingerprints the codes belong to

A rerun with other settings or other targets into the same OUT is refused (`experiments.runs.claim_out_dir`).
`fill_identity` scores the rows of a folder inverted without an identity metric.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm

from latentspaces.interfaces import CodeInitializer, IdentitySimilarity, PerceptualDistance
from latentspaces.io import to_uint8
from latentspaces.metrics.image import reconstruction_metrics
from latentspaces.spaces import PNStats, build_space, read_code_file
from optimizers import HybridInverter

from ..distributed import World
from ..runs import (SETTINGS_FILE, append_rows, chunk_path, claim_out_dir, generator_fingerprint, read_rows,
                    read_settings, save_chunk, write_rows, write_settings)

PER_IMAGE_CSV = "space_comparison_per_image.csv"
PER_IMAGE_FIELDS = ["space", "target", "mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "seconds"]


def metric_name(metric: Optional[object]) -> str:
    """The name a perceptual or identity metric is recorded under ('none' for None)."""
    return "none" if metric is None else getattr(metric, "name", type(metric).__name__)


def inversion_settings(G: torch.nn.Module, steps: int, lr: float, lambda_per: float, lambda_reg: float,
                       perceptual: Optional[PerceptualDistance], identity: Optional[IdentitySimilarity],
                       encoders: Optional[Mapping[str, CodeInitializer]], chunk: int, seed: int) -> Dict[str, object]:
    """What decides the codes and the per-image rows of a run (recorded by `claim_out_dir`)."""
    return {"generator": generator_fingerprint(G), "steps": steps, "lr": lr,
            "lambda_per": lambda_per if perceptual is not None else 0.0,
            "lambda_reg": lambda_reg if encoders else 0.0, "init": "encoder" if encoders else "mean",
            "perceptual": metric_name(perceptual), "identity": metric_name(identity), "chunk": chunk, "seed": seed}


def _nan(n: int) -> torch.Tensor:
    return torch.full((n,), math.nan)


def invert_missing(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                             # [N, 3, R, R] in [-1, 1]
    spaces: Sequence[str],
    steps: int,
    lr: float,
    lambda_per: float,
    lambda_reg: float,
    perceptual: Optional[PerceptualDistance] = None,   # used in the loss (lambda_per > 0) and reported
    identity: Optional[IdentitySimilarity] = None,     # reported
    pn_stats: Optional[PNStats] = None,
    encoders: Optional[Mapping[str, CodeInitializer]] = None,  # space name -> encoder (else init='mean')
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
    per_image = out / PER_IMAGE_CSV
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
            per = perceptual(res.images, x) if perceptual else _nan(len(x))
        ident = identity(res.images, x) if identity else _nan(len(x))
        save_chunk(out, name, start, res.code, res.images, steps)
        rows = [{"space": name, "target": start + i, **{k: f"{float(v[i]):.6g}" for k, v in m.items()},
                 "perceptual": f"{float(per[i]):.6g}", "identity": f"{float(ident[i]):.6g}",
                 "seconds": f"{res.seconds / len(x):.4g}"} for i in range(len(x))]
        append_rows(per_image, rows, PER_IMAGE_FIELDS)
    world.barrier()


def fill_identity(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                         # [N, 3, R, R] in [-1, 1]: the targets OUT was made with
    identity: IdentitySimilarity,                  # (images, targets) -> [N] similarities; has .name
    pn_stats: Optional[PNStats] = None,            # the statistics P_N codes were inverted with
    progress: bool = True,
) -> int:
    """Score the rows of OUT's per-image CSV that have no identity (a run made with identity=None).

    For inversions made where the identity model is not installed (a GPU machine without dlib, say):
    each chunk's reconstructions are regenerated from its code file, as float images like the ones a
    run with the metric scores (not the saved uint8 copies), compared with their targets, and the CSV
    is rewritten atomically. Once no row lacks an identity, the settings record the metric, so that
    `compare --identity ...` resumes the folder. Returns the number of rows filled.
    """
    settings = read_settings(out)
    name = metric_name(identity)
    if settings.get("identity") not in ("none", name):
        raise ValueError(f"{out} was scored with identity {settings.get('identity')!r}, not {name!r}; "
                         "identities of two metrics would mix in one column")
    claim_out_dir(out, {k: v for k, v in settings.items() if k != "targets"}, targets)  # same targets?
    per_image = out / PER_IMAGE_CSV
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
        saved = read_code_file(chunk_path(out, space_name, start))
        space = build_space(space_name, G, pn_stats)
        with torch.no_grad():
            images = space.synthesize(saved.code.to(targets.device))
        # Up to 1/255 off where another device rounds a pixel the other way; more means another model.
        if (to_uint8(images).int() - saved.images.int()).abs().max() > 1:
            raise ValueError(f"the {space_name} codes of chunk {start} in {out} do not regenerate the images saved "
                             "with them; score with the generator (and P_N statistics) they were inverted with")
        scores = identity(images, targets[start : start + len(images)])
        for r in group:
            r["identity"] = f"{float(scores[int(r['target']) - start]):.6g}"
    write_rows(per_image, rows, PER_IMAGE_FIELDS)
    if not any(math.isnan(float(r["identity"])) for r in rows) and settings.get("identity") != name:
        write_settings(out / SETTINGS_FILE, {**settings, "identity": name})
    return sum(len(group) for group in missing.values())


__all__ = ["PER_IMAGE_CSV", "PER_IMAGE_FIELDS", "fill_identity", "inversion_settings", "invert_missing", "metric_name"]
