"""Paired comparisons of two spaces (or two compensation methods) on the same targets and edits: wins, mean
difference, Wilcoxon p.

Means over targets hide how often one space beats another on the same image, and whether a gap of
0.01 is noise. Both experiments record per-image (and per-edit) rows, so every difference between
two spaces can be paired: reconstruction metrics per target (space_comparison_per_image.csv) and
identity after editing per (target, direction, signed alpha) (identity_curves.csv), and at a matched
edit size per (target, direction, sign) where both spaces reached it (matched_edits.csv). The test is
scipy's two-sided Wilcoxon signed-rank test on the paired differences (zero differences dropped).
A folder written by `latentspaces compensation` pairs methods instead (compensation_per_image.csv: the
reconstruction metrics and the edit identity per target).

Writes into OUT: paired_statistics.csv and paired_statistics.md, one row per (space a, space b,
measure), where "a better" counts pairs in which a is better in the measure's own sense (lower MSE
and perceptual distance, higher PSNR, SSIM, MS-SSIM and identity).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from latentspaces.spaces import SPACE_ORDER
from latentspaces.storage import atomic_write_text

from ..rows import read_rows, write_rows
from ..summaries import paired_test, paired_values, per_target_means
from .calibration import read_calibration
from .compensation import PER_IMAGE as COMPENSATION_ROWS
from .compensation import PER_IMAGE_CSV as COMPENSATION_CSV
from .identity_curves import CURVES, CURVES_CSV
from .inversions import PER_IMAGE, PER_IMAGE_CSV
from .matched_edits import MATCHED, MATCHED_CSV, matched_identity_pairs

HIGHER_IS_BETTER = {"mse": False, "psnr": True, "ssim": True, "ms_ssim": True, "perceptual": False, "identity": True,
                    "edit_identity": True}
RECONSTRUCTION = ("mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity")
FIELDS = ["a", "b", "measure", "n", "a_better", "b_better", "mean_a", "mean_b", "mean_diff", "p_wilcoxon",
          "mean_a_calibrated", "mean_b_calibrated", "mean_diff_calibrated"]


def reconstruction_pairs(rows: List[dict], a: str, b: str, metrics: Sequence[str] = RECONSTRUCTION,
                         name_field: str = "space") -> List[dict]:
    """Per-target paired tests of space (or method: `name_field`) a against b on each metric (per-image rows)."""
    out = []
    for m in metrics:
        _, va, vb = paired_values(rows, a, b, ["target"], m, name_field)
        if len(va) and np.isfinite(va).all() and np.isfinite(vb).all():
            out.append({"a": a, "b": b, "measure": m, **paired_test(va, vb, HIGHER_IS_BETTER[m])})
    return out


def edit_identity_pairs(rows: List[dict], a: str, b: str, abs_alpha: Optional[float]) -> List[dict]:
    """Paired tests of identity after edits (identity_curves.csv rows).

    abs_alpha given: edits of size |alpha| = abs_alpha, tested per edit (target, direction, signed
    alpha) and per target (mean over its edits). abs_alpha None: every alpha of the curves, averaged
    per target (the paper's editing score averages images x directions x steps); only the per-target
    test, since alpha = 0 repeats one value for every direction.
    """
    near = rows if abs_alpha is None else [r for r in rows if abs(abs(float(r["alpha"])) - abs_alpha) < 1e-6]
    keys, va, vb = paired_values(near, a, b, ["target", "direction", "alpha"], "identity")
    if not keys:
        return []
    ta, tb = per_target_means(keys, va, vb)
    if abs_alpha is None:
        return [{"a": a, "b": b, "measure": "edit identity, mean over all alphas, per target",
                 **paired_test(ta, tb, True)}]
    return [{"a": a, "b": b, "measure": f"edit identity |alpha|={abs_alpha:g}, per edit", **paired_test(va, vb, True)},
            {"a": a, "b": b, "measure": f"edit identity |alpha|={abs_alpha:g}, per target",
             **paired_test(ta, tb, True)}]


def run_paired_statistics(out: Path, a: str, others: Optional[Sequence[str]] = None, abs_alpha: float = 2.0,
                          n_targets: Optional[int] = None) -> List[dict]:
    """Compare space `a` with each of `others` (default: every other space with rows in OUT) -> CSV + Markdown.

    n_targets: use only targets 0 .. n_targets-1 (all when None), as the summaries do.
    """
    if (out / COMPENSATION_CSV).is_file():
        return _method_pairs(out, a, others, n_targets)
    recon = read_rows(out / PER_IMAGE_CSV, PER_IMAGE)
    curves = read_rows(out / CURVES_CSV, CURVES)
    matched = read_rows(out / MATCHED_CSV, MATCHED)
    if not recon and not curves:
        raise ValueError(f"{out} has neither space_comparison_per_image.csv, identity_curves.csv nor "
                         f"{COMPENSATION_CSV}; run `latentspaces compare`, `identity-curves` or `compensation` into it first")
    if n_targets is not None:
        recon = [r for r in recon if int(r["target"]) < n_targets]
        curves = [r for r in curves if int(r["target"]) < n_targets]
        matched = [r for r in matched if int(r["target"]) < n_targets]
    present = {r["space"] for r in recon} | {r["space"] for r in curves}
    if a not in present:
        raise ValueError(f"space {a!r} has no rows in {out} (spaces there: {sorted(present)})")
    if others is None:
        others = [s for s in SPACE_ORDER if s in present and s != a]
    missing = [s for s in others if s not in present]
    if missing:
        raise ValueError(f"spaces {missing} have no rows in {out} (spaces there: {sorted(present)})")
    results = []
    for b in others:
        results += (reconstruction_pairs(recon, a, b) + edit_identity_pairs(curves, a, b, abs_alpha)
                    + edit_identity_pairs(curves, a, b, None))
        for size in sorted({float(r["size"]) for r in matched}):
            results += matched_identity_pairs(matched, a, b, size)
    return _write(out, results)


def _method_pairs(out: Path, a: str, others: Optional[Sequence[str]], n_targets: Optional[int]) -> List[dict]:
    """Method `a` against each of `others` (default: every other method) in a compensation folder."""
    rows = [r for r in read_rows(out / COMPENSATION_CSV, COMPENSATION_ROWS)
            if n_targets is None or int(r["target"]) < n_targets]
    present = list(dict.fromkeys(r["method"] for r in rows))
    if a not in present or any(b not in present for b in others or ()):
        raise ValueError(f"methods {[m for m in (a, *(others or ())) if m not in present]} have no rows in {out} "
                         f"(methods there: {present})")
    results = []
    for b in others if others is not None else [m for m in present if m != a]:
        results += reconstruction_pairs(rows, a, b, (*RECONSTRUCTION, "edit_identity"), name_field="method")
    return _write(out, results)


def _write(out: Path, results: List[dict]) -> List[dict]:
    """paired_statistics.csv and .md from the paired rows (identity also on the folder's calibrated scale)."""
    calibration = read_calibration(out)
    for r in results:  # identity on the calibrated scale: an affine map, so wins and the Wilcoxon p are unchanged
        identity = calibration is not None and "identity" in r["measure"]
        r.update({f"{k}_calibrated": float(calibration.calibrate(r[k])) if identity else "" for k in ("mean_a", "mean_b")})
        r["mean_diff_calibrated"] = r["mean_diff"] / (1 - calibration.impostor) if identity else ""
    write_rows(out / "paired_statistics.csv", results, FIELDS)
    lines = ["| a | b | measure | n | a better | b better | mean a | mean b | mean a (cal.) | mean b (cal.) | "
             "p (Wilcoxon) |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        measure = r["measure"].replace("|", "\\|")  # a bare | would split the Markdown cell
        cal = [f"{r[k]:.3f}" if r[k] != "" else "" for k in ("mean_a_calibrated", "mean_b_calibrated")]
        lines.append(f"| {r['a']} | {r['b']} | {measure} | {r['n']} | {r['a_better']} | {r['b_better']} | "
                     f"{r['mean_a']:.4g} | {r['mean_b']:.4g} | {cal[0]} | {cal[1]} | {r['p_wilcoxon']:.2g} |")
    if calibration is not None:
        lines += ["", calibration.describe() + ". Calibration is the same affine map for both spaces, so the "
                  "wins and the Wilcoxon p are those of the raw similarity."]
    atomic_write_text(out / "paired_statistics.md", "\n".join(lines) + "\n")
    return results


__all__ = ["HIGHER_IS_BETTER", "edit_identity_pairs", "paired_test", "reconstruction_pairs", "run_paired_statistics"]
