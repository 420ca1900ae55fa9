"""`latentspaces identity-curves`: identity vs edit step per space ("Revisiting Latent Space of GAN Inversion",
Fig. 6), identity at matched edit sizes, the random-direction grid and the trade-off figure.

    latentspaces identity-curves --quick --out runs/quick   # after (or before) compare into the same folder
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..argtypes import HELDOUT, UsageError
from ..distributed import World
from ..studies.calibration import read_calibration
from ..studies.identity_curves import IdentityCurvesConfig, run_identity_curves
from ..studies.inversions import PER_IMAGE_CSV
from ..studies.tradeoff import write_tradeoff
from .common import (InversionResources, add_inversion_flags, announce, check_inversion, check_measures_identity,
                     pn_stats_for)

NAME = "identity-curves"
HELP = "identity vs edit step per space; curves + robustness grid"
RANKS = "sharded"   # shards its jobs over torchrun ranks (experiments.distributed)
CONFIG = IdentityCurvesConfig     # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inversion_flags(p, IdentityCurvesConfig)


def check(args: argparse.Namespace) -> None:
    c = IdentityCurvesConfig.from_args(args)
    check_inversion(args, c.recipe, seeded=True)   # the seed draws the GANSpace samples too
    check_measures_identity(args)
    if c.index is not None and args.targets in (None, HELDOUT) and c.index >= c.n_targets:  # held-out: known count
        raise UsageError(f"--index {c.index}: the run has {c.n_targets} targets (give 0 .. {c.n_targets - 1})")


def run(args: argparse.Namespace) -> None:
    c = IdentityCurvesConfig.from_args(args)
    r = InversionResources.load(args, c.recipe, c.spaces, c.n_targets)
    t = time.time()
    out = Path(args.out)
    announce(c.recipe, r.perceptual)
    summary = run_identity_curves(out, r.G, r.targets, r.identity, c, perceptual=r.perceptual, encoders=r.encoders,
                                  pn_stats=pn_stats_for(r.G, c.spaces, c.pn_samples), compile=args.compile)
    if not World.current().main:
        return
    for row in summary:
        calibrated = (f"  calibrated at |alpha|=2: {row['identity_calibrated_at_2']:.3f}  verified: "
                      f"{row['verified_at_2']:.0%}" if "identity_calibrated_at_2" in row else "")
        change = f"  edit change at |alpha|=2: {row['edit_change_at_2']:.4f}" if "edit_change_at_2" in row else ""
        matched = "".join(f"  at edit size {size:g}: {row[f'identity_at_size_{size:g}']:.4f} (reached "
                          f"{row[f'reached_at_size_{size:g}']:.0%})" for size in c.edit_sizes
                          if f"identity_at_size_{size:g}" in row)
        print(f"{row['space']:8s} identity at |alpha|=2: {row.get('identity_at_2', float('nan')):.4f}  "
              f"mean over alphas: {row['identity_mean']:.4f}{calibrated}{change}{matched}")
    calibration = read_calibration(out)
    if calibration is not None and summary:
        print(calibration.describe())
    if summary and (out / PER_IMAGE_CSV).is_file():
        write_tradeoff(out)
    print(f"wrote {out}/identity_curves.csv, matched_edits.csv, identity_curves.png/.pdf, identity_summary.csv, "
          f"random_directions.png, tradeoff.png/.pdf ({time.time() - t:.0f} s)")
