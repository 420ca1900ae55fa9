"""`latentspaces drag-study`: DragGAN's face landmark manipulation (its Table 1) in each latent space: MD to the
target landmarks against the identity kept (drag_study.png), on generator samples and inverted held-out faces.

    latentspaces drag-study --quick --out runs/drag    # 2 pairs x (1, 5, 68 points) x 6 spaces x 2 sources
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..argtypes import UsageError
from ..studies.drag_study import DragStudyConfig, check_config, run_drag_study
from .common import (add_identity_flag, add_machine_flags, add_quick_flag, add_targets_flag, check_measures_identity,
                     load_generator, load_identity, load_targets)
from ..config import add_config_flags

NAME = "drag-study"
HELP = ("DragGAN's landmark drags in each space: distance to the targets against the identity kept "
        "(drag_study.png)")
RANKS = "one"
CONFIG = DragStudyConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_flags(p)
    add_quick_flag(p)
    p.add_argument("--recipe", choices=tuple(DragStudyConfig.PRESETS), default=None,
                   help="the preset: quick (= --quick), full or paper (16 pairs, 300 steps) (default paper)")
    add_targets_flag(p, help="held-out faces to invert and drag (default: the shipped held-out set)")
    add_config_flags(p, DragStudyConfig)
    add_identity_flag(p)


def check(args: argparse.Namespace) -> None:
    check_measures_identity(args)
    try:
        check_config(DragStudyConfig.from_args(args))
    except ValueError as e:
        raise UsageError(str(e)) from None


def run(args: argparse.Namespace) -> None:
    c = DragStudyConfig.from_args(args)
    G = load_generator(args)
    heldout = load_targets(args, G, 2 * c.pairs)
    identity = load_identity(args)
    t = time.time()
    out = Path(args.out)
    run_drag_study(out, G, heldout, identity, c)
    print((out / "drag_study_summary.md").read_text(), end="")
    print(f"wrote {out}/drag_study.csv, drag_study_summary.csv/.md, drag_study_paired.csv, drag_study.png/.pdf "
          f"({time.time() - t:.0f} s)")
