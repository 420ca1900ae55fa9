"""Compensation comparison (the setting of "Spatial-Contextual Discrepancy Information Compensation for GAN
Inversion", Table 2): base W+ encoder, SDIC, PTI and HybridInverter F/Z+.

For each method and target: reconstruction metrics (MSE, PSNR, SSIM, MS-SSIM from torchmetrics),
the perceptual distance, identity similarity to the target, seconds per image, and editing identity:
the mean identity similarity between the target and its edits along GANSpace directions at
alpha in `edit_alphas` (W-kind directions for base / SDIC / PTI, their Z counterparts for F/Z+).

- base:   W = E(x), G(W)
- sdic:   SDIC's compensated reconstruction; edits by compensate-and-edit
- pti:    PTI pivot + generator tuning, one generator per image (PTI's single-image mode, the setting
          its time per image is quoted in); edits move the pivot in the tuned generator
- fzplus: HybridInverter in F/Z+ initialised by the F encoder; edits move the detail z's

Per-image rows are appended to compensation_per_image.csv as each method finishes, and the images
to images/<method>.safetensors: an interrupted run resumes with the methods still missing. Under
`torchrun` the methods are sharded over the ranks and rank 0 writes the table and the grid.
Outputs: compensation_comparison.csv / .md and compensation_grid.png (rows: target, then methods).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from latentspaces.directions import Direction
from latentspaces.images import save_images
from latentspaces.interfaces import IdentitySimilarity, PerceptualDistance
from latentspaces.io import from_uint8
from latentspaces.metrics.image import reconstruction_metrics
from latentspaces.spaces import Code, FZPlus, WPlus
from optimizers import PTI, HybridInverter

from ..distributed import World
from ..runs import append_rows, load_image_file, mean_std_rows, read_rows, save_image_file, write_mean_std_table

METHODS = ["base", "sdic", "pti", "fzplus"]
FIELDS = ["method", "target", "mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "edit_identity", "seconds"]
SUMMARY = ["mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "edit_identity", "seconds"]
TABLE_COLUMNS = [("MSE", "mse", ".4f", True), ("SSIM", "ssim", ".3f", True), ("perceptual", "perceptual", ".3f", True),
                 ("identity", "identity", ".3f", True), ("edit identity", "edit_identity", ".3f", True),
                 ("s / image", "seconds_per_image", ".3g", False)]


def _wplus_delta(G: torch.nn.Module, ws: torch.Tensor, direction: Direction, alpha: float) -> torch.Tensor:
    """The change of ws [N, num_ws, w_dim] that editing along a W direction by alpha makes."""
    space = WPlus(G)
    return space.edit(Code(w=ws), direction, alpha).w - ws


def _edit_identity(identity: Optional[IdentitySimilarity], targets: torch.Tensor,
                   render: Callable[[Direction, float], torch.Tensor], directions: Sequence[Direction],
                   alphas: Sequence[float]) -> torch.Tensor:
    """Mean over directions x alphas of identity(render(d, a), targets), per image [N]."""
    if identity is None:
        return torch.full((targets.shape[0],), math.nan)
    sims = []
    for d in directions:
        for a in alphas:
            with torch.no_grad():
                sims.append(identity(render(d, a), targets).reshape(-1).cpu())
    return torch.stack(sims).mean(0)


def run_method(method: str, G: torch.nn.Module, targets: torch.Tensor, models: dict,
               directions: Dict[str, List[Direction]], alphas: Sequence[float],
               identity: Optional[IdentitySimilarity], settings: dict):
    """(images [N, 3, R, R], edit identity [N], seconds per image) for one method."""
    n = targets.shape[0]
    base = models["base"]
    if method in ("base", "sdic"):
        t0 = time.perf_counter()
        with torch.no_grad():
            ws = base(targets)
            x0 = G.synthesis(ws, noise_mode="const")
            comp = models["sdic"].compensate(G, targets, ws, x0) if method == "sdic" else None
        seconds = (time.perf_counter() - t0) / n
        if method == "base":
            images = x0

            def render(d, a):
                return G.synthesis(ws + _wplus_delta(G, ws, d, a), noise_mode="const")
        else:
            images = comp.image

            def render(d, a):
                return models["sdic"].edit(G, comp, _wplus_delta(G, comp.ws, d, a))
        return images, _edit_identity(identity, targets, render, directions["w"], alphas), seconds
    if method == "pti":
        res = PTI(G, per_image=True, progress=False, **settings["pti"]).run(targets)
        pivots = [g.broadcast(res.pivots[i:i + 1]) for i, g in enumerate(res.generator)]

        def render(d, a):
            return torch.cat([g.synthesis(p + _wplus_delta(g, p, d, a), noise_mode="const")
                              for g, p in zip(res.generator, pivots)])
        return res.images, _edit_identity(identity, targets, render, directions["w"], alphas), res.seconds / n
    if method == "fzplus":
        space = FZPlus(G)
        res = HybridInverter(space, encoder=models["f"], progress=False, **settings["fzplus"]).invert(targets)

        def render(d, a):
            return space.synthesize(space.edit(res.code, d, a))
        return res.images, _edit_identity(identity, targets, render, directions["z"], alphas), res.seconds / n
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def run_compensation_comparison(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                  # [N, 3, R, R] in [-1, 1]
    models: dict,                           # 'base' (W+ encoder), 'sdic' (SDIC), 'f' (F encoder)
    directions: Dict[str, List[Direction]],  # 'w' and 'z' GANSpace directions (std-scaled)
    settings: dict,                         # 'pti': PTI kwargs, 'fzplus': HybridInverter kwargs
    perceptual: Optional[PerceptualDistance] = None,
    identity: Optional[IdentitySimilarity] = None,
    methods: Sequence[str] = METHODS,
    edit_alphas: Sequence[float] = (-2.0, 2.0),
) -> List[dict]:
    """Run each method still missing from OUT (sharded over `torchrun` ranks); rank 0 returns the summary rows."""
    world = World.current()
    (out / "images").mkdir(parents=True, exist_ok=True)
    per_image = out / "compensation_per_image.csv"
    done = {r["method"] for r in read_rows(per_image)}
    todo = [m for m in methods if m not in done]
    world.barrier()  # every rank has listed the same methods before any rank adds rows
    for method in tqdm(world.shard(todo), desc="compensation comparison", unit="method", disable=not world.main):
        images, edit_id, seconds = run_method(method, G, targets, models, directions, edit_alphas, identity, settings)
        with torch.no_grad():
            m = reconstruction_metrics(images, targets)
            per = perceptual(images, targets).reshape(-1) if perceptual else torch.full((len(targets),), math.nan)
            ident = identity(images, targets).reshape(-1) if identity else torch.full((len(targets),), math.nan)
        save_image_file(out / "images" / f"{method}.safetensors", images, method=method)
        append_rows(per_image, [
            {"method": method, "target": i, **{k: f"{float(v[i]):.6g}" for k, v in m.items()},
             "perceptual": f"{float(per[i]):.6g}", "identity": f"{float(ident[i]):.6g}",
             "edit_identity": f"{float(edit_id[i]):.6g}", "seconds": f"{seconds:.4g}"}
            for i in range(len(targets))], FIELDS)
    world.barrier()
    if not world.main:
        return []
    summary = summarize(out, methods)
    grid(out, targets, methods)
    return summary


def summarize(out: Path, methods: Sequence[str]) -> List[dict]:
    """Mean and std per method -> compensation_comparison.csv and .md; returns the rows."""
    summary = mean_std_rows(read_rows(out / "compensation_per_image.csv"), "method", methods, SUMMARY)
    write_mean_std_table(out, "compensation_comparison", summary, "method", TABLE_COLUMNS)
    return summary


def grid(out: Path, targets: torch.Tensor, methods: Sequence[str], max_cols: int = 8) -> None:
    """compensation_grid.png: the first `max_cols` targets [N, 3, R, R] and below them each method's images."""
    k = min(max_cols, targets.shape[0])
    rows = [targets[:k].cpu()]
    for method in methods:
        path = out / "images" / f"{method}.safetensors"
        if path.is_file():
            rows.append(from_uint8(load_image_file(path)[:k]))
    save_images(torch.cat(rows), out / "compensation_grid.png", nrow=k)
