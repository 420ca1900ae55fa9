"""`latentspaces compensation`: the base W+ encoder, the compensation heads, PTI and HybridInverter F/Z+
("Spatial-Contextual Discrepancy Information Compensation for GAN Inversion", Table 2).

    latentspaces compensation --quick --out runs/comp
    latentspaces compensation --methods base,hfgi,pti --hfgi my_hfgi.safetensors --out runs/comp
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, Tuple

from encoders import COMPENSATION_HEADS, load_encoder, load_head
from latentspaces import assets

from ..argtypes import UsageError, encoder_spec
from ..config import RECIPE_WITHOUT_INIT
from ..distributed import World
from ..runs import hold_out_dir
from ..studies.compensation import CompensationConfig, CompensationModels, run_compensation_comparison
from ..studies.tradeoff import write_tradeoff
from .common import (add_inversion_flags, add_workers_flags, check_inversion, load_generator, load_identity,
                     load_perceptual, load_targets, print_table)

NAME = "compensation"
HELP = "base W+ encoder vs the compensation heads vs PTI vs F/Z+ (SDIC's Table 2)"
RANKS = "sharded"   # shards its jobs over torchrun ranks (experiments.distributed)
CONFIG = CompensationConfig     # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inversion_flags(p, CompensationConfig, RECIPE_WITHOUT_INIT, encoders=False, workers=False)
    p.add_argument("--base-encoder", type=encoder_spec, default=assets.DEFAULT_WPLUS_ENCODER,
                   help=f"W+ encoder name or file (default {assets.DEFAULT_WPLUS_ENCODER})")
    p.add_argument("--f-encoder", type=encoder_spec, default=assets.DEFAULT_F_ENCODER,
                   help=f"F encoder name or file, the F/Z+ method's start (default {assets.DEFAULT_F_ENCODER})")
    for head in COMPENSATION_HEADS:
        p.add_argument(f"--{head}", type=encoder_spec, default=None,
                       help=f"{head} head name or file (default: {assets.default_head(head)} when it is installed)")
    add_workers_flags(p, compile=False)   # after the networks' flags, as --help lists them


def plan(args: argparse.Namespace) -> Tuple[Tuple[str, ...], Dict[str, str]]:
    """(methods, head name -> name or file) of a run: --methods, or base, every head given by its flag or
    installed as default-<head>, pti and fzplus."""
    heads = {}
    for head in COMPENSATION_HEADS:
        given = getattr(args, head)
        if given is not None:
            heads[head] = given
        elif assets.installed(assets.default_head(head)) and (args.methods is None or head in args.methods):
            heads[head] = assets.default_head(head)
    methods = args.methods or ("base", *heads, "pti", "fzplus")
    return tuple(methods), {h: spec for h, spec in heads.items() if h in methods}


def check(args: argparse.Namespace) -> None:
    """The inversion flags, and a network for every head --methods names; a head flag is used."""
    check_inversion(args, CompensationConfig.from_args(args).recipe)
    methods, heads = plan(args)
    missing = [m for m in methods if m in COMPENSATION_HEADS and m not in heads]
    if missing:
        m, shipped = missing[0], assets.ASSETS[assets.default_head(missing[0])]
        raise UsageError(f"--methods names {m}, but {assets.default_head(m)} is not installed "
                         f"({assets.ASSET_DIR / shipped.file}); train one with `{shipped.made_by}` and pass --{m} FILE")
    unused = [f"--{h}" for h in COMPENSATION_HEADS if getattr(args, h) is not None and h not in methods]
    if unused:
        raise UsageError(f"{', '.join(unused)} given but --methods leaves {'it' if len(unused) == 1 else 'them'} out")


def run(args: argparse.Namespace) -> None:
    c = CompensationConfig.from_args(args)
    perceptual, identity = load_perceptual(args, c.recipe), load_identity(args)
    methods, heads = plan(args)
    models = CompensationModels(base=load_encoder(args.base_encoder, args.device),
                                f=load_encoder(args.f_encoder, args.device),
                                heads={head: load_head(spec, args.device, head) for head, spec in heads.items()})
    G = load_generator(args)
    targets = load_targets(args, G, c.n_targets)
    out = Path(args.out)
    t = time.time()
    run_compensation_comparison(out, G, targets, models, replace(c, methods=methods), perceptual, identity)
    if World.current().main:
        with hold_out_dir(out):
            write_tradeoff(out)
        print_table(out, "compensation_comparison", f"{out}/compensation_comparison.csv, .md, compensation_grid.png, "
                                                    "tradeoff.png/.pdf", t)
