"""Figures a reader understands without the code: labelled image grids and the trade-off plot.

- `labelled_grid(path, rows, row_labels, col_labels, captions=None, title="")`: images in a table with
  the row name (space, method, "targets") on the left, the column name (target index, alpha) on top
  and, where given, a metric under each tile.
- `tradeoff_plot(path, points, x_label, y_label, title)`: distortion against editability, one point per
  space or head with its error bars, an optional marker size (edit strength), the Pareto front drawn
  (lower distortion and higher editability are better), written as .png and .pdf.

matplotlib (Agg backend) draws, `latentspaces.storage.save_figure` writes atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

from latentspaces.storage import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def labelled_grid(path: Path, rows: Sequence[torch.Tensor], row_labels: Sequence[str], col_labels: Sequence[str],
                  captions: Optional[Sequence[Optional[Sequence[str]]]] = None, title: str = "",
                  tile_inches: float = 1.25) -> None:
    """A grid of uint8 images: rows[i] [C, 3, H, W], labelled per row and column, a caption under each tile.

    captions[i]: None (no captions in that row) or C strings ("" leaves a tile bare).
    """
    if len(rows) != len(row_labels) or any(r.shape[0] != len(col_labels) for r in rows):
        raise ValueError(f"{len(rows)} rows of {[r.shape[0] for r in rows]} images for {len(row_labels)} row labels "
                         f"and {len(col_labels)} column labels")
    plt = _pyplot()
    n_rows, n_cols = len(rows), len(col_labels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(tile_inches * n_cols + 0.6, (tile_inches + 0.18) * n_rows + 0.5),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = axes[i, j]
            ax.imshow(img.permute(1, 2, 0).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
            if captions is not None and captions[i] is not None and captions[i][j]:
                ax.set_xlabel(captions[i][j], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def tile_caption(row: Optional[dict]) -> str:
    """'MSE  id IDENTITY' of a per-image row (identity left out when not scored; '' without a row)."""
    if row is None:
        return ""
    identity = float(row["identity"])
    return f"{float(row['mse']):.4f}" + ("" if math.isnan(identity) else f"  id {identity:.3f}")


@dataclass(frozen=True)
class TradeoffPoint:
    """One space or head: mean distortion and editability with their spreads (std or a CI half-width)."""

    name: str
    distortion: float
    distortion_err: float
    editability: float
    editability_err: float
    size: Optional[float] = None   # edit strength, drawn as marker area and printed beside the name (None: neither)


def pareto_front(points: Sequence[TradeoffPoint]) -> List[TradeoffPoint]:
    """The points no other point beats on both axes (lower distortion, higher editability), by distortion."""
    front = [p for p in points
             if not any(q.distortion <= p.distortion and q.editability >= p.editability
                        and (q.distortion, q.editability) != (p.distortion, p.editability) for q in points)]
    return sorted(front, key=lambda p: p.distortion)


@dataclass(frozen=True)
class SizeCurve:
    """Identity against edit size for one space or method: sizes [k] (mean absolute pixel change, the
    unedited image at 0), identities [k] (mean over the edits that reached each size) and their std."""

    name: str
    sizes: Tuple[float, ...]
    identities: Tuple[float, ...]
    errors: Tuple[float, ...]


def tradeoff_plot(path: Path, points: Sequence[TradeoffPoint], x_label: str, y_label: str, title: str,
                  note: str = "", size_curves: Sequence[SizeCurve] = (), size_label: str = "") -> None:
    """`path` (.png) and its .pdf twin: editability against distortion with error bars and the Pareto front;
    with `size_curves`, a second panel of identity (`size_label`) against edit size, one line per curve."""
    if not points:
        raise ValueError("no points to plot: the folder has no rows with both a distortion and an edit identity")
    plt = _pyplot()
    if size_curves:
        fig, (ax, right) = plt.subplots(1, 2, figsize=(11.5, 4.6))
        _size_panel(right, size_curves, size_label, plt.rcParams["axes.prop_cycle"].by_key()["color"],
                    [p.name for p in points])
    else:
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
    sizes = [p.size for p in points if p.size is not None]
    scale = 300 / max(sizes) if sizes else 0
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, p in enumerate(points):
        color = colors[k % len(colors)]
        ax.errorbar(p.distortion, p.editability, xerr=p.distortion_err, yerr=p.editability_err, fmt="none",
                    ecolor=color, alpha=0.6, capsize=3, zorder=2)
        ax.scatter([p.distortion], [p.editability], s=40 if p.size is None else max(20.0, p.size * scale),
                   color=color, edgecolor="black", linewidth=0.6, zorder=3, label=p.name)
        label = p.name if p.size is None else f"{p.name} ({p.size:.2f})"
        ax.annotate(label, (p.distortion, p.editability), textcoords="offset points", fontsize=8,
                    xytext=(6, 5) if k % 2 == 0 else (6, -12))   # alternate sides: close points stay legible
    front = pareto_front(points)
    ax.plot([p.distortion for p in front], [p.editability for p in front], color="gray", linestyle="--",
            linewidth=1.2, zorder=1, label="Pareto front")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=7, loc="best")
    for handle in legend.legend_handles:   # one marker size in the legend, whatever the points' sizes
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([40])
    if note:
        fig.text(0.01, 0.01, note, fontsize=6.5, wrap=True)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    else:
        fig.tight_layout()
    save_figure(fig, path, dpi=150)
    save_figure(fig, Path(path).with_suffix(".pdf"))
    plt.close(fig)


def _size_panel(ax, curves: Sequence[SizeCurve], label: str, colors: Sequence[str], order: Sequence[str]) -> None:
    """Identity against matched edit size, each curve in the colour of its point on the left panel."""
    color_of = {name: colors[k % len(colors)] for k, name in enumerate(order)}
    for k, c in enumerate(curves):
        color = color_of.get(c.name, colors[(len(order) + k) % len(colors)])
        ax.errorbar(c.sizes, c.identities, yerr=c.errors, color=color, marker="o", markersize=4, capsize=3,
                    linewidth=1.8, label=c.name)
    ax.set_xlabel("edit size: mean absolute pixel change (images in [-1, 1])")
    ax.set_ylabel(label)
    ax.set_title("Identity at matched edit size (mean, one std over targets)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


__all__ = ["SizeCurve", "TradeoffPoint", "labelled_grid", "pareto_front", "tile_caption", "tradeoff_plot"]
