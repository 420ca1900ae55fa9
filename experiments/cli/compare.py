"""`latentspaces compare`: invert targets into every space ("Revisiting Latent Space of GAN Inversion", Table 1).

    latentspaces compare --quick --out runs/quick          # minutes on a CPU: 8 targets, the quick recipe
    latentspaces compare --recipe paper --out runs/paper   # the paper's recipe (the default), 64 targets
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..distributed import World
from ..studies.space_comparison import CompareConfig, f_size_line, run_space_comparison
from .common import InversionResources, add_inversion_flags, announce, check_inversion, pn_stats_for, print_table

NAME = "compare"
HELP = "invert targets into every space; table + grid"
RANKS = "sharded"   # shards its jobs over torchrun ranks (experiments.distributed)
CONFIG = CompareConfig     # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inversion_flags(p, CompareConfig)


def check(args: argparse.Namespace) -> None:
    check_inversion(args, CompareConfig.from_args(args).recipe)


def run(args: argparse.Namespace) -> None:
    c = CompareConfig.from_args(args)
    r = InversionResources.load(args, c.recipe, c.spaces, c.n_targets)
    t = time.time()
    out = Path(args.out)
    announce(c.recipe, r.perceptual)
    f_line = f_size_line(r.G, c.spaces)
    if f_line and World.current().main:
        print(f_line)
    run_space_comparison(out, r.G, r.targets, c, perceptual=r.perceptual, identity=r.identity,
                         pn_stats=pn_stats_for(r.G, c.spaces, c.pn_samples), encoders=r.encoders, compile=args.compile)
    if World.current().main:
        print_table(out, "space_comparison", f"{out}/space_comparison.csv, .md, reconstructions.png", t)
