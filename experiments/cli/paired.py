"""`latentspaces paired`: paired tests of one space against others on the rows already in a folder.

    latentspaces paired --out runs/quick --a FZPlus        # wins and Wilcoxon p of F/Z+ against each space
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from ..argtypes import UsageError, existing_dir, non_negative_float, positive_int, space_list, space_name
from ..config import Config, add_config_flags, option
from ..studies.paired_statistics import run_paired_statistics
from .common import print_table

NAME = "paired"
HELP = "paired tests of one space against others on the rows already in --out"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class PairedConfig(Config):
    """One space against others on the rows already in OUT."""

    a: str = option("FZPlus", "the space compared against the others", type=space_name)
    b: Optional[Tuple[str, ...]] = option(None, "comma-separated spaces", type=space_list,
                                          default_text="every other space in --out")
    alpha: float = option(2.0, "|alpha| of the edits compared (identity curves)", type=non_negative_float)
    n_targets: Optional[int] = option(None, "use targets 0 .. n-1 only", type=positive_int, names=("--n",),
                                      default_text="all")


CONFIG = PairedConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=existing_dir, help="a folder written by compare and/or identity-curves")
    add_config_flags(p, PairedConfig)


def check(args: argparse.Namespace) -> None:
    c = PairedConfig.from_args(args)
    if c.b is not None and c.a in c.b:
        raise UsageError(f"--b {','.join(c.b)} includes --a {c.a}; a space is not compared with itself")


def run(args: argparse.Namespace) -> None:
    c = PairedConfig.from_args(args)
    out = Path(args.out)
    run_paired_statistics(out, c.a, c.b, abs_alpha=c.alpha, n_targets=c.n_targets)
    print_table(out, "paired_statistics", f"{out}/paired_statistics.csv and .md")
