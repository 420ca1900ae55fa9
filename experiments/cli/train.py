"""`latentspaces train NAME`: the project's trainers, one subcommand each, on the shared training loop.

    latentspaces train sdic --out runs/sdic                        # default generator + default-wplus
    latentspaces train sdic --out runs/sdic --resume               # continue a killed run
    latentspaces train hfgi --out runs/hfgi --data ~/ffhq --generator ffhq.pt --base-encoder e4e.pt
    torchrun --nproc_per_node=4 -m experiments.cli train sdic --out runs/sdic   # data parallel

Each trainer's flags are made from its typed config (`experiments.training.train_<name>.CONFIG`, e.g.
`SDICConfig`), which its `train` takes whole: from Python, `train_sdic.train(SDICConfig(out="runs/sdic"))` runs
what `latentspaces train sdic --out runs/sdic` runs.
"""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Dict

from ..config import add_config_flags
from ..training import (train_f_encoder, train_gradstyle, train_hfgi, train_reganie, train_sdic, train_stylegan2,
                        train_wplus_encoder)

NAME = "train"
HELP = "train the default model, an encoder or a compensation head (latentspaces train NAME --help)"
RANKS = "trainer"   # joins torchrun's process group itself (experiments.training.common.open_run)
CONFIG = None       # each trainer has its own (TRAINERS[name].CONFIG)

# The trainers by subcommand name, in the order the default assets are made.
TRAINERS: Dict[str, ModuleType] = {
    "stylegan2": train_stylegan2, "f-encoder": train_f_encoder, "wplus-encoder": train_wplus_encoder,
    "sdic": train_sdic, "hfgi": train_hfgi, "gradstyle": train_gradstyle, "reganie": train_reganie,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    trainers = p.add_subparsers(dest="trainer", required=True, metavar="NAME", parser_class=type(p))
    for name, module in TRAINERS.items():
        sub = trainers.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0], description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        add_config_flags(sub, module.CONFIG)


def check(args: argparse.Namespace) -> None:
    """argparse checks every flag (each trainer's types)."""


def run(args: argparse.Namespace) -> None:
    trainer = TRAINERS[args.trainer]
    trainer.train(trainer.CONFIG.from_args(args))
