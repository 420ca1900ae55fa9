"""`latentspaces paired`: paired tests of one space against others on the rows already in a folder.

    latentspaces paired --out runs/quick --a FZPlus        # wins and Wilcoxon p of F/Z+ against each space
    latentspaces paired --out runs/comp --a pti --b hfgi,sdic   # a compensation folder: methods instead
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from latentspaces.spaces import SPACE_ORDER

from ..argtypes import UsageError, existing_dir, name_list, non_negative_float, positive_int
from ..studies.compensation import METHODS
from ..config import Config, add_config_flags, option
from ..studies.paired_statistics import run_paired_statistics
from .common import print_table

NAMES = (*SPACE_ORDER, *METHODS)   # spaces, and the compensation methods


def space_or_method(text: str) -> str:
    """One latent space or compensation method by name."""
    if text not in NAMES:
        raise argparse.ArgumentTypeError(f"unknown space or method {text!r}; choose from {', '.join(NAMES)}")
    return text


NAME = "paired"
HELP = "paired tests of one space against others on the rows already in --out"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class PairedConfig(Config):
    """One space (or compensation method) against others on the rows already in OUT."""

    a: str = option("FZPlus", "the space (or, in a compensation folder, the method) compared against the others",
                    type=space_or_method)
    b: Optional[Tuple[str, ...]] = option(None, "comma-separated spaces or methods", type=name_list(NAMES, "name"),
                                          default_text="every other space (method) in --out")
    alpha: float = option(2.0, "|alpha| of the edits compared (identity curves)", type=non_negative_float)
    n_targets: Optional[int] = option(None, "use targets 0 .. n-1 only", type=positive_int, names=("--n",),
                                      default_text="all")


CONFIG = PairedConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=existing_dir, help="a folder written by compare and/or identity-curves, or by compensation")
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
