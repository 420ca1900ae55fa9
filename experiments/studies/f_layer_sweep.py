"""The F-layer sweep: what F/Z+ and F/W+ do as the base code f grows from a sliver of the image to more than all of it.

"Revisiting Latent Space of GAN Inversion" (and BDInvert before it) put f at the first conv of the 16x16
block of a 1024 px generator: 512 x 16 x 16 numbers, 4.2% of the image's. The same rule on the 64 px
default model gives an f of 133% of the image's numbers, which can copy the image, so a 64 px table
does not show the paper's regime. This study inverts the same targets into F/Z+ and F/W+ with f at
every conv layer from b4.conv1 up to the first conv of the 16x16 block (`sweep_layers`), and records
per (space, layer, target):

- reconstruction MSE and identity to the target;
- edit change: the mean absolute pixel change of the GANSpace edits at |alpha| = 2 (Z directions for
  F/Z+, W directions for F/W+, both std-scaled, as in the identity curves), and their identity;
- identity at matched edit size (`matched_edits`): per size, the mean identity of the edits whose alpha
  was searched to change the image by that much, and the share of edits that reached it;

against F's size as a share of the image's numbers. Every layer starts from the space's mean code (f
from w_avg at that layer; the F encoder predicts one layer only), with the recipe's steps, lr and
weights, so the layers differ only in where f sits.

Writes into OUT: f_layer_sweep.csv (per target rows, appended per (space, layer): resumable),
f_layer_sweep_summary.csv (mean per space and layer), f_layer_sweep.png / .pdf (four panels against
F's share, the paper's 4.2% marked), f_layer_sweep_settings.json (a rerun with other settings into
OUT is refused). The run holds OUT's lock.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from latentspaces.directions import Direction
from latentspaces.fingerprints import generator_fingerprint
from latentspaces.interfaces import IdentitySimilarity, PerceptualDistance
from latentspaces.losses import pixel_distance
from latentspaces.progress import progress_bar
from latentspaces.spaces import build_space
from latentspaces.storage import save_figure
from optimizers import PAPER, RECIPES, HybridInverter, InversionRecipe

from ..argtypes import layer_list, positive_int, space_list
from ..argtypes import seed as seed_flag
from ..config import Config, option

from ..rows import RowSchema, append_rows, read_rows, write_rows, write_summary
from ..runs import claim_out_dir, hold_out_dir
from .identity_curves import edit_directions
from .inversions import metric_name
from .presets import DIRECTION_SAMPLES, DIRECTIONS, TARGETS
from .matched_edits import edit_sizes_option, edit_with_alphas, matched_edit_rows, matched_summary, pixel_change

SWEEP_SPACES = ("FZPlus", "FWPlus")
PAPER_F_SHARE = 131_072 / (3 * 1024 * 1024)   # BDInvert's f at 1024 px: 512 x 16 x 16 of 3 x 1024 x 1024 numbers
ROWS_CSV = "f_layer_sweep.csv"
SETTINGS_FILE = "f_layer_sweep_settings.json"
EDIT_ALPHA = 2.0


def sweep_layers(G: torch.nn.Module) -> List[str]:
    """The conv layers from b4.conv1 to the first conv of the 16x16 block (b16.conv0), in synthesis order;
    for a generator below 16 px, every conv layer."""
    layers = list(G.synthesis.feature_layers)
    return layers[: layers.index("b16.conv0") + 1] if "b16.conv0" in layers else layers


def f_share(G: torch.nn.Module, layer: str) -> float:
    """f's numbers at `layer` over the image's (C h w / (3 R^2))."""
    return math.prod(G.synthesis.feature_shape(layer)) / (G.img_channels * G.resolution ** 2)


def _fields(sizes: Sequence[float]) -> List[str]:
    return (["space", "layer", "f_share", "target", "mse", "identity", "edit_change_at_2", "identity_at_2"]
            + [f"{k}_at_size_{s:g}" for s in sizes for k in ("identity", "reached")])


@dataclass(frozen=True)
class FLayerSweepConfig(Config):
    """`latentspaces f-layer-sweep` and `run_f_layer_sweep`: F/Z+ and F/W+ with f at each layer up to b16.conv0.
    The recipe gives the steps, lr and weights; the study always starts from the mean code. Default: the
    `paper` preset."""

    n_targets: int = option(TARGETS["paper"], "number of held-out targets", type=positive_int, names=("--n",))
    recipe: InversionRecipe = PAPER
    directions: int = option(DIRECTIONS["paper"], "GANSpace directions per kind", type=positive_int)
    direction_samples: int = DIRECTION_SAMPLES["paper"]   # W samples of the GANSpace PCA
    spaces: Tuple[str, ...] = option(SWEEP_SPACES, "F spaces", type=space_list)
    layers: Optional[Tuple[str, ...]] = option(None, "comma-separated conv layers", type=layer_list,
                                               default_text="b4.conv1 .. b16.conv0")
    edit_sizes: Tuple[float, ...] = edit_sizes_option()
    seed: int = option(0, "GANSpace sampling, 0 .. 2^32 - 1", type=seed_flag)


FLayerSweepConfig.PRESETS = {
    name: FLayerSweepConfig(n_targets=TARGETS[name], recipe=recipe, directions=DIRECTIONS[name],
                            direction_samples=DIRECTION_SAMPLES[name]) for name, recipe in RECIPES.items()}


def run_f_layer_sweep(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                        # [N, 3, R, R] in [-1, 1]
    identity: IdentitySimilarity,                 # (images, targets) -> [N] in [-1, 1]
    config: Optional[FLayerSweepConfig] = None,   # None: FLayerSweepConfig(), the paper preset
    perceptual: Optional[PerceptualDistance] = None,   # the loss's perceptual term (recipe.lambda_per > 0)
    progress: bool = True,
) -> List[dict]:
    """Invert and edit `targets` in each (space, layer) still missing from OUT; returns the summary rows."""
    c = config or FLayerSweepConfig()
    spaces, edit_sizes, seed, n_directions, direction_samples = (c.spaces, c.edit_sizes, c.seed, c.directions,
                                                                  c.direction_samples)
    layers = list(c.layers or sweep_layers(G))
    unknown = [name for name in layers if name not in G.synthesis.feature_layers]
    if unknown:
        raise ValueError(f"layers {unknown} are not conv layers of this generator ({list(G.synthesis.feature_layers)})")
    recipe = c.recipe.replace(init="mean")
    fields = _fields(edit_sizes)
    schema = RowSchema(tuple(fields), key=("space", "layer", "target"), ints=("target",),
                       floats=tuple(fields[4:]))
    settings = {"generator": generator_fingerprint(G), **recipe.record(), "perceptual": metric_name(perceptual),
                "identity": metric_name(identity), "directions": n_directions, "direction_samples": direction_samples,
                "edit_sizes": [float(s) for s in edit_sizes], "seed": seed}
    n = targets.shape[0]
    with hold_out_dir(out):
        claim_out_dir(out, settings, targets, (ROWS_CSV,), SETTINGS_FILE)
        counts = Counter((r["space"], r["layer"]) for r in read_rows(out / ROWS_CSV, schema) if int(r["target"]) < n)
        done = {key for key, c in counts.items() if c >= n}   # a job counts when every target has its row
        dirs = edit_directions(G, out, n_directions, direction_samples, seed)
        jobs = [(name, layer) for layer in layers for name in spaces if (name, layer) not in done]
        if jobs and (out / ROWS_CSV).exists():   # a job is redone whole: its earlier rows go first (never two per key)
            kept = [r for r in read_rows(out / ROWS_CSV, schema) if (r["space"], r["layer"]) not in set(jobs)]
            write_rows(out / ROWS_CSV, kept, fields)
        for name, layer in progress_bar(jobs, desc="F-layer sweep", unit="space x layer", disable=not progress or not jobs):
            space = build_space(name, G, layer=layer, **recipe.space_options(name))
            inv = HybridInverter.from_recipe(space, recipe, perceptual, progress=progress)
            res = inv.invert(targets, seed=seed)
            rows = _job_rows(space, res.code, res.images, targets, identity, dirs[space.kind], edit_sizes)
            share = f_share(G, layer)
            append_rows(out / ROWS_CSV, [{"space": name, "layer": layer, "f_share": f"{share:.6g}", **r}
                                         for r in rows], fields)
        rows = [r for r in read_rows(out / ROWS_CSV, schema) if int(r["target"]) < n]
        summary = _summarize(rows, spaces, layers, fields[4:])
        write_summary(out / "f_layer_sweep_summary.csv", summary, "space")
        plot_sweep(out, summary, spaces, edit_sizes)
    return summary


@torch.no_grad()
def _job_rows(space, code, images: torch.Tensor, targets: torch.Tensor, identity: IdentitySimilarity,
              directions: Sequence[Direction], sizes: Sequence[float]) -> List[Dict[str, str]]:
    """Per target: reconstruction, |alpha| = 2 edits and matched-size identities (formatted for the CSV)."""
    n = targets.shape[0]
    mse = pixel_distance(images, targets, "l2")
    ident = identity(images, targets).reshape(-1)
    change, edit_ident, matched = [], [], []
    for d in directions:
        for sign in (1, -1):
            edited = edit_with_alphas(space, code, d, torch.full((n,), sign * EDIT_ALPHA))
            change.append(pixel_change(edited, images))
            edit_ident.append(identity(edited, targets).reshape(-1))
        matched += matched_edit_rows(lambda a: edit_with_alphas(space, code, d, a), images, targets, identity, sizes)
    change_t, ident_t = torch.stack(change).mean(0), torch.stack(edit_ident).mean(0)
    rows = []
    for i in range(n):
        row = {"target": i, "mse": f"{float(mse[i]):.6g}", "identity": f"{float(ident[i]):.6g}",
               "edit_change_at_2": f"{float(change_t[i]):.6g}", "identity_at_2": f"{float(ident_t[i]):.6g}"}
        for size, got in matched_summary([r for r in matched if r["target"] == i]).items():
            values = got["identity"]
            row[f"identity_at_size_{size:g}"] = f"{sum(values) / len(values):.6g}" if values else "nan"
            row[f"reached_at_size_{size:g}"] = f"{got['reached']:.6g}"
        rows.append(row)
    return rows


def _summarize(rows: List[dict], spaces: Sequence[str], layers: Sequence[str], metrics: Sequence[str]) -> List[dict]:
    """Mean of each metric per (space, layer) (matched identities over the targets that reached the size)."""
    summary = []
    for name in spaces:
        for layer in layers:
            mine = [r for r in rows if r["space"] == name and r["layer"] == layer]
            if not mine:
                continue
            row = {"space": name, "layer": layer, "f_share": float(mine[0]["f_share"]), "n": len(mine)}
            for m in metrics:
                values = [float(r[m]) for r in mine if math.isfinite(float(r[m]))]
                row[m] = sum(values) / len(values) if values else math.nan
            summary.append(row)
    return summary


def plot_sweep(out: Path, summary: Sequence[dict], spaces: Sequence[str], sizes: Sequence[float]) -> None:
    """f_layer_sweep.png / .pdf: MSE, identity, edit change and identity at matched size against F's share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = sorted(sizes)[len(sizes) // 2] if sizes else None
    panels = [("mse", "reconstruction MSE"), ("identity", "identity before editing"),
              ("edit_change_at_2", "edit change at |alpha| = 2 (pixels)")]
    if size is not None:
        panels.append((f"identity_at_size_{size:g}", f"identity at edit size {size:g}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6))
    for ax, (key, title) in zip(axes, panels):
        for name in spaces:
            mine = sorted((r for r in summary if r["space"] == name), key=lambda r: r["f_share"])
            if mine:
                ax.plot([100 * r["f_share"] for r in mine], [r[key] for r in mine], marker="o", label=name)
                for r in mine:
                    ax.annotate(r["layer"], (100 * r["f_share"], r[key]), fontsize=6, textcoords="offset points",
                                xytext=(3, 3))
        ax.axvline(100 * PAPER_F_SHARE, color="gray", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("F's size, % of the image's numbers")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("F-layer sweep (dashed: the paper's f at 1024 px, 4.2% of the image)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "f_layer_sweep.png", dpi=150)
    save_figure(fig, out / "f_layer_sweep.pdf")
    plt.close(fig)


__all__ = ["FLayerSweepConfig", "PAPER_F_SHARE", "SWEEP_SPACES", "f_share", "plot_sweep", "run_f_layer_sweep", "sweep_layers"]
