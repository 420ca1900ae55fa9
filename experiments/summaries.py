"""Summaries of per-image rows: mean and std per space or method, as a CSV and a Markdown table, and paired
tests of two spaces or methods on the same targets (wins, mean difference, Wilcoxon signed-rank p from SciPy)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from latentspaces.storage import atomic_write_text

from .rows import write_summary


def mean_std_rows(rows: List[dict], key: str, names: Sequence[str], metrics: Sequence[str],
                  skip_nan: Sequence[str] = ()) -> List[dict]:
    """Per name (rows with row[key] == name, in `names` order): n, and mean and std of each metric.

    The mean of 'seconds' is reported as 'seconds_per_image' (and its std as 'seconds_per_image_std').
    Metrics in `skip_nan` are averaged over their finite values (a NaN there means "not reached", not
    "not measured"); elsewhere a NaN makes the mean NaN.
    """
    summary = []
    for name in names:
        mine = [r for r in rows if r[key] == name]
        if not mine:
            continue
        row = {key: name, "n": len(mine)}
        for k in metrics:
            v = torch.tensor([float(r[k]) for r in mine], dtype=torch.float64)
            if k in skip_nan:
                v = v[torch.isfinite(v)]
            col = "seconds_per_image" if k == "seconds" else k
            row[col] = float(v.mean()) if len(v) else math.nan
            row[f"{col}_std"] = float(v.std()) if len(v) > 1 else 0.0
        summary.append(row)
    return summary


def plus_minus(row: dict, key: str, fmt: str) -> str:
    """'mean ± std' of a summary row from `mean_std_rows`, both in `fmt`."""
    return f"{row[key]:{fmt}} ± {row[key + '_std']:{fmt}}"


def write_mean_std_table(out: Path, stem: str, summary: List[dict], key: str,
                         columns: Sequence[Tuple[str, str, str, bool]], note: str = "") -> None:
    """{stem}.csv (every field of the `mean_std_rows` rows) and {stem}.md, both atomically.

    The Markdown table has a column `key`, then n, then one per (title, field, format, spread): 'mean ± std'
    when spread, else the mean alone; `note` (how to read a column) follows the table.
    """
    write_summary(out / f"{stem}.csv", summary, key)
    lines = ["| " + " | ".join([key, "n", *(c[0] for c in columns)]) + " |",
             "| --- | ---: |" + " ---: |" * len(columns)]
    for r in summary:
        cells = [plus_minus(r, field, fmt) if spread else f"{r[field]:{fmt}}" for _, field, fmt, spread in columns]
        lines.append("| " + " | ".join([str(r[key]), str(r["n"]), *cells]) + " |")
    if note:
        lines += ["", note]
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")


def paired_test(a: np.ndarray, b: np.ndarray, higher_is_better: bool) -> Dict[str, float]:
    """Paired values a[i], b[i] ([n] each, same units) -> counts of wins, means, mean(a - b), two-sided p.

    p is NaN when every difference is zero (the test is undefined there).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired_test needs two equally long non-empty 1-d arrays, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_test got NaN or inf values (was the metric disabled in that run?)")
    d = a - b
    sign = 1.0 if higher_is_better else -1.0
    from scipy.stats import wilcoxon   # imported on use: scipy.stats costs ~0.8 s at every command's start

    p = float(wilcoxon(a, b).pvalue) if np.count_nonzero(d) else float("nan")
    return {"n": len(d), "a_better": int((sign * d > 0).sum()), "b_better": int((sign * d < 0).sum()),
            "mean_a": float(a.mean()), "mean_b": float(b.mean()), "mean_diff": float(d.mean()), "p_wilcoxon": p}


def paired_values(rows: List[dict], a: str, b: str, key_fields: Sequence[str], value: str, name_field: str = "space"
                  ) -> Tuple[List[tuple], np.ndarray, np.ndarray]:
    """The keys both spaces (or methods: `name_field`) have rows for (sorted) and the values of a and b there
    ([n] each)."""
    by_space: Dict[str, Dict[tuple, float]] = {a: {}, b: {}}
    for r in rows:
        if r[name_field] in by_space:
            by_space[r[name_field]][tuple(r[k] for k in key_fields)] = float(r[value])
    common = sorted(set(by_space[a]) & set(by_space[b]))
    return common, np.array([by_space[a][k] for k in common]), np.array([by_space[b][k] for k in common])


def per_target_means(keys: List[tuple], va: np.ndarray, vb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean of a's and of b's values per target (keys[i][0]) over that target's paired entries."""
    target_of = np.array([int(k[0]) for k in keys])
    targets = np.unique(target_of)
    return (np.array([va[target_of == t].mean() for t in targets]),
            np.array([vb[target_of == t].mean() for t in targets]))


__all__ = ["mean_std_rows", "paired_test", "paired_values", "per_target_means", "plus_minus", "write_mean_std_table"]
