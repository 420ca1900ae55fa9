"""The distortion-editability trade-off of a run folder, from the rows it already holds.

Every inversion paper argues about one trade-off: how far the reconstruction is from the target
(distortion) against how well the face survives an edit (editability). `tradeoff_points(out)` reads

- a compare + identity-curves folder: per space, distortion = the mean per-target MSE (or perceptual
  distance) of space_comparison_per_image.csv, editability = the mean per-target identity after edits
  at |alpha| = `abs_alpha` (identity_curves.csv);
- a compensation folder: per method, distortion from compensation_per_image.csv and editability =
  its `edit_identity` (the identity after the GANSpace edits of the compensation run), with its edit
  strength (the edits' pixel change over the base encoder's) as the marker size;

with error bars of one standard deviation over targets, and identity on the calibrated scale of the
folder (`studies.calibration`; the raw cosine when the folder has none). `write_tradeoff(out)` draws
tradeoff.png / .pdf (`experiments.figures.tradeoff_plot`, the Pareto front dashed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from latentspaces.spaces import SPACE_ORDER

from ..figures import SizeCurve, TradeoffPoint, tradeoff_plot
from ..rows import read_rows
from .calibration import read_calibration
from .compensation import MATCHED as COMPENSATION_MATCHED
from .compensation import METHODS
from .compensation import PER_IMAGE as COMPENSATION_ROWS
from .compensation import MATCHED_CSV as COMPENSATION_MATCHED_CSV
from .compensation import PER_IMAGE_CSV as COMPENSATION_CSV
from .identity_curves import CURVES, CURVES_CSV
from .matched_edits import MATCHED, MATCHED_CSV
from .inversions import PER_IMAGE, PER_IMAGE_CSV

DISTORTIONS = {"mse": "MSE", "perceptual": "perceptual distance"}


def _per_target(rows: Sequence[dict], name_field: str, value: str) -> Dict[str, Dict[int, List[float]]]:
    out: Dict[str, Dict[int, List[float]]] = {}
    for r in rows:
        v = float(r[value])
        if np.isfinite(v):
            out.setdefault(r[name_field], {}).setdefault(int(r["target"]), []).append(v)
    return out


def _mean_std(by_target: Dict[int, List[float]], targets: Sequence[int]) -> tuple:
    values = np.array([np.mean(by_target[t]) for t in targets])
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def tradeoff_points(out: Path, distortion: str = "mse", abs_alpha: float = 2.0) -> tuple:
    """(points, x label, y label, note, 'spaces' or 'methods') for the folder OUT (see the module docstring)."""
    if distortion not in DISTORTIONS:
        raise ValueError(f"distortion must be one of {sorted(DISTORTIONS)}, got {distortion!r}")
    calibration = read_calibration(out)
    scale = (lambda s: (s - calibration.impostor) / (1 - calibration.impostor)) if calibration else (lambda s: s)
    recon = read_rows(out / PER_IMAGE_CSV, PER_IMAGE)
    curves = read_rows(out / CURVES_CSV, CURVES)
    if recon and curves:
        dist = _per_target(recon, "space", distortion)
        near = [r for r in curves if abs(abs(float(r["alpha"])) - abs_alpha) < 1e-6]
        edit = _per_target(near, "space", "identity")
        names = [n for n in SPACE_ORDER if n in dist and n in edit]
        what, kind = f"edit identity, |alpha| = {abs_alpha:g}", "spaces"
    else:
        rows = read_rows(out / COMPENSATION_CSV, COMPENSATION_ROWS)
        if not rows:
            raise ValueError(f"{out} has neither compare + identity-curves rows nor compensation rows; "
                             "run those commands into it first")
        dist = _per_target(rows, "method", distortion)
        edit = _per_target(rows, "method", "edit_identity")
        base_change = {int(r["target"]): float(r["edit_change"]) for r in rows if r["method"] == "base"
                       and r["edit_change"]}
        strength = _per_target([{**r, "edit_strength": float(r["edit_change"]) / base_change[int(r["target"])]}
                                for r in rows if r["edit_change"] and base_change.get(int(r["target"]), 0) > 0],
                               "method", "edit_strength")
        names = [n for n in METHODS if n in dist and n in edit]
        what, kind = "edit identity (GANSpace edits)", "methods"
    points = []
    for name in names:
        shared = sorted(set(dist[name]) & set(edit[name]))
        if not shared:
            continue
        d, d_err = _mean_std(dist[name], shared)
        e, e_err = _mean_std({t: [scale(v) for v in vs] for t, vs in edit[name].items()}, shared)
        mine = strength.get(name, {}) if kind == "methods" else {}
        size = float(np.mean([np.mean(mine[t]) for t in shared if t in mine])) if mine else None
        points.append(TradeoffPoint(name, d, d_err, e, e_err, size))
    y_label = f"{'calibrated ' if calibration else ''}{what}"
    sized = any(p.size is not None for p in points)
    note = ("Points: mean over targets, bars: one std. " + ("Marker area and the number beside the name: edit "
            "strength, the pixel change of the edits relative to the base encoder's (base = 1). " if sized else "")
            + (calibration.describe() if calibration else
            "Identity is the raw cosine similarity (no calibration recorded in this folder)."))
    x_label = f"distortion: {DISTORTIONS[distortion]} (lower is better)"
    return points, x_label, y_label + " (higher better)", note, kind


def size_curves(out: Path) -> List[SizeCurve]:
    """Identity against matched edit size per space (matched_edits.csv, with the unedited identity at
    size 0 from the alpha = 0 rows of identity_curves.csv), or per method (the compensation folder's
    matched rows): per target the mean over the edits that reached the size, then mean and std over
    targets; on the folder's calibrated scale when it has one."""
    calibration = read_calibration(out)
    scale = (lambda s: (s - calibration.impostor) / (1 - calibration.impostor)) if calibration else (lambda s: s)
    matched = read_rows(out / MATCHED_CSV, MATCHED)
    name_field = "space"
    if not matched:
        matched = read_rows(out / COMPENSATION_MATCHED_CSV, COMPENSATION_MATCHED)
        name_field = "method"
    if not matched:
        return []
    start = {}   # name -> target -> identity before editing
    for r in read_rows(out / CURVES_CSV, CURVES):
        if abs(float(r["alpha"])) < 1e-9:
            start.setdefault(r["space"], {}).setdefault(int(r["target"]), []).append(float(r["identity"]))
    order = SPACE_ORDER if name_field == "space" else METHODS
    curves = []
    for name in [n for n in order if any(r[name_field] == n for r in matched)]:
        mine = [r for r in matched if r[name_field] == name and np.isfinite(float(r["alpha"]))]
        sizes, means, stds = [], [], []
        levels = [(0.0, start.get(name, {}))] + [
            (size, _per_target([r for r in mine if float(r["size"]) == size], name_field, "identity").get(name, {}))
            for size in sorted({float(r["size"]) for r in matched})]
        for size, by_target in levels:
            if by_target:
                m, sd = _mean_std({t: [scale(v) for v in vs] for t, vs in by_target.items()}, sorted(by_target))
                sizes.append(size)
                means.append(m)
                stds.append(sd)
        if sizes:
            curves.append(SizeCurve(name, tuple(sizes), tuple(means), tuple(stds)))
    return curves


def write_tradeoff(out: Path, distortion: str = "mse", abs_alpha: float = 2.0,
                   title: Optional[str] = None) -> Path:
    """tradeoff.png / .pdf in OUT from its rows (with the panel of identity at matched edit size when the
    folder has matched-size rows); returns the .png path."""
    points, x_label, y_label, note, kind = tradeoff_points(out, distortion, abs_alpha)
    path = out / "tradeoff.png"
    calibrated = read_calibration(out) is not None
    tradeoff_plot(path, points, x_label, y_label, title or f"Distortion vs editability of the {kind} in {out}", note,
                  size_curves(out), f"{'calibrated ' if calibrated else ''}identity to the target (higher better)")
    return path


__all__ = ["DISTORTIONS", "size_curves", "tradeoff_points", "write_tradeoff"]
