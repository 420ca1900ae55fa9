"""Summaries of per-image rows: mean and std per space or method, as a CSV and a Markdown table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import torch

from latentspaces.storage import atomic_write_text

from .rows import write_summary


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


__all__ = ["mean_std_rows", "plus_minus", "write_mean_std_table"]
