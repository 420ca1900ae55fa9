"""Compensation comparison (SDIC's Table 2 setting): base W+ encoder, SDIC, PTI and HybridInverter F/Z+.

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
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

import latentspaces as ls
from latentspaces.metrics.image import reconstruction_metrics

from .distributed import World
from .space_comparison import append_rows, mean_std_rows, plus_minus, read_rows, to_uint8, write_rows

METHODS = ["base", "sdic", "pti", "fzplus"]
FIELDS = ["method", "target", "mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "edit_identity", "seconds"]
SUMMARY = ["mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "edit_identity", "seconds"]


def _wplus_delta(G, ws: torch.Tensor, direction, alpha: float) -> torch.Tensor:
    """The change of ws [N, num_ws, w_dim] that editing along a W direction by alpha makes."""
    space = ls.WPlus(G)
    return space.edit(ls.Code(w=ws), direction, alpha).w - ws


def _edit_identity(identity: Optional[Callable], targets: torch.Tensor, render: Callable, directions, alphas) -> torch.Tensor:
    """Mean over directions x alphas of identity(render(d, a), targets), per image [N]."""
    if identity is None:
        return torch.full((targets.shape[0],), math.nan)
    sims = []
    for d in directions:
        for a in alphas:
            with torch.no_grad():
                sims.append(identity(render(d, a), targets).reshape(-1).cpu())
    return torch.stack(sims).mean(0)


def run_method(method: str, G, targets: torch.Tensor, models: dict, directions: Dict[str, list],
               alphas: Sequence[float], identity: Optional[Callable], settings: dict):
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
            images = comp["image"]
            layer = models["sdic"].layer

            def render(d, a):
                return models["sdic"].edit(G, comp, layer, _wplus_delta(G, comp["ws"], d, a))
        return images, _edit_identity(identity, targets, render, directions["w"], alphas), seconds
    if method == "pti":
        from optimizers import PTI

        res = PTI(G, per_image=True, progress=False, **settings["pti"]).run(targets)
        pivots = [g.broadcast(res.pivots[i:i + 1]) for i, g in enumerate(res.generator)]

        def render(d, a):
            return torch.cat([g.synthesis(p + _wplus_delta(g, p, d, a), noise_mode="const")
                              for g, p in zip(res.generator, pivots)])
        return res.images, _edit_identity(identity, targets, render, directions["w"], alphas), res.seconds / n
    if method == "fzplus":
        from optimizers import HybridInverter

        space = ls.FZPlus(G)
        res = HybridInverter(space, encoder=models["f"], progress=False, **settings["fzplus"]).invert(targets)

        def render(d, a):
            return space.synthesize(space.edit(res.code, d, a))
        return res.images, _edit_identity(identity, targets, render, directions["z"], alphas), res.seconds / n
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def run_compensation_comparison(
    out: Path,
    G,
    targets: torch.Tensor,                  # [N, 3, R, R] in [-1, 1]
    models: dict,                           # 'base' (W+ encoder), 'sdic' (SDIC), 'f' (F encoder)
    directions: Dict[str, list],            # 'w' and 'z' GANSpace directions (std-scaled)
    settings: dict,                         # 'pti': PTI kwargs, 'fzplus': HybridInverter kwargs
    perceptual: Optional[Callable] = None,
    identity: Optional[Callable] = None,
    methods: Sequence[str] = METHODS,
    edit_alphas: Sequence[float] = (-2.0, 2.0),
) -> List[dict]:
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
        save_file({"images": to_uint8(images)}, str(out / "images" / f"{method}.safetensors"))
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
    summary = mean_std_rows(read_rows(out / "compensation_per_image.csv"), "method", methods, SUMMARY)
    write_rows(out / "compensation_comparison.csv", summary, list(summary[0]) if summary else ["method"])
    lines = ["| method | n | MSE | SSIM | perceptual | identity | edit identity | s / image |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in summary:
        def pm(k, fmt):
            return plus_minus(r, k, fmt)
        lines.append(f"| {r['method']} | {r['n']} | {pm('mse', '.4f')} | {pm('ssim', '.3f')} | {pm('perceptual', '.3f')} | "
                     f"{pm('identity', '.3f')} | {pm('edit_identity', '.3f')} | {r['seconds_per_image']:.3g} |")
    (out / "compensation_comparison.md").write_text("\n".join(lines) + "\n")
    return summary


def grid(out: Path, targets: torch.Tensor, methods: Sequence[str], max_cols: int = 8) -> None:
    from latentspaces.images import save_images

    k = min(max_cols, targets.shape[0])
    rows = [targets[:k].cpu()]
    for method in methods:
        path = out / "images" / f"{method}.safetensors"
        if path.is_file():
            rows.append(load_file(str(path))["images"][:k].float() / 127.5 - 1)
    save_images(torch.cat(rows), out / "compensation_grid.png", nrow=k)
