"""`latentspaces tradeoff`: the distortion vs editability figure from the rows already in folders.

    latentspaces tradeoff --out runs/quick runs/comp       # tradeoff.png/.pdf in each
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..argtypes import existing_dir, positive_float
from ..config import Config, add_config_flags, option
from ..studies.tradeoff import write_tradeoff

NAME = "tradeoff"
HELP = "distortion vs editability figure (tradeoff.png/.pdf) from the rows in folders"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class TradeoffConfig(Config):
    """The axes of the figure."""

    distortion: str = option("mse", "the distortion axis", choices=("mse", "perceptual"))
    alpha: float = option(2.0, "|alpha| of the edits whose identity is the editability axis (identity curves)",
                          type=positive_float)


CONFIG = TradeoffConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=existing_dir, nargs="+",
                   help="folders written by compare + identity-curves, or by compensation; one figure in each")
    add_config_flags(p, TradeoffConfig)


def check(args: argparse.Namespace) -> None:
    """argparse checks every flag."""


def run(args: argparse.Namespace) -> None:
    c = TradeoffConfig.from_args(args)
    for out in args.out:
        path = write_tradeoff(Path(out), c.distortion, c.alpha)
        print(f"wrote {path} and {path.with_suffix('.pdf').name}")
