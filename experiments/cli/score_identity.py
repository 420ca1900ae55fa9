"""`latentspaces score-identity`: fill in the identity of a compare folder inverted with --identity none.

    latentspaces score-identity --out runs/gpu            # e.g. inverted on a machine without dlib
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from latentspaces.spaces import SPACE_ORDER

from ..argtypes import UsageError, existing_dir
from ..config import Config
from ..rows import read_rows
from ..runs import hold_out_dir, read_settings
from ..studies.calibration import folder_calibration
from ..studies.inversions import PER_IMAGE_CSV, fill_identity
from ..studies.presets import PN_SAMPLES
from ..studies.space_comparison import f_size_line, summarize
from .common import add_identity_flag, add_machine_flags, add_targets_flag, load_generator, load_identity, load_targets
from .common import pn_stats_for, print_table

NAME = "score-identity"
HELP = "fill in the identity of a compare folder inverted with --identity none"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class ScoreIdentityConfig(Config):
    """The P_N statistics the folder was inverted with (its recipe's preset)."""

    pn_samples: int = PN_SAMPLES["paper"]


ScoreIdentityConfig.PRESETS = {name: ScoreIdentityConfig(pn_samples=n) for name, n in PN_SAMPLES.items()}


CONFIG = ScoreIdentityConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_flags(p, "a folder written by compare", existing_dir)
    add_targets_flag(p, "the targets the folder was inverted with (as in compare)")
    add_identity_flag(p, none=False)
    p.add_argument("--quick", action="store_true",
                   help=f"the folder was made with --quick (P_N statistics of {PN_SAMPLES['quick']:,} samples)")


def check(args: argparse.Namespace) -> None:
    """argparse checks every flag."""


def run(args: argparse.Namespace) -> None:
    c = ScoreIdentityConfig.from_args(args)
    out = Path(args.out)
    try:
        recorded = read_settings(out)
    except FileNotFoundError as e:
        raise UsageError(f"{e}: score-identity scores a folder written by compare") from None
    identity = load_identity(args)
    G = load_generator(args)
    n = len(recorded["targets"])
    targets = load_targets(args, G, n)
    with hold_out_dir(out):  # fill_identity holds it too; the summary must be written under the same hold
        present = {r["space"] for r in read_rows(out / PER_IMAGE_CSV)}
        filled = fill_identity(out, G, targets, identity, pn_stats=pn_stats_for(G, present, c.pn_samples))
        names = [name for name in SPACE_ORDER if name in present]
        summarize(out, names, n, folder_calibration(out, identity, targets), f_note=f_size_line(G, names))
    print_table(out, "space_comparison", f"{out}/space_comparison_per_image.csv, space_comparison.csv, .md "
                                         f"({filled} images scored)")
