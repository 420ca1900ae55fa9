"""`latentspaces directions`: find editing directions (GANSpace, SeFa, random) and save them.

    latentspaces directions --method ganspace --kind z --out runs/dirs
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from latentspaces.directions import ganspace, random_directions, save_directions, sefa

from ..argtypes import UsageError, positive_int, sample_count
from ..argtypes import seed as seed_flag
from ..config import Config, add_config_flags, option
from .common import add_machine_flags, load_generator

NAME = "directions"
HELP = "find directions (GANSpace, SeFa, random) and save them"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class DirectionsConfig(Config):
    """Find directions and save them."""

    method: str = option("ganspace", "how directions are found", choices=("ganspace", "sefa", "random"))
    kind: str = option("w", "'z' or 'w' directions (SeFa's are always 'w')", choices=("z", "w"))
    count: int = option(10, "directions found", type=positive_int)
    samples: int = option(100_000, "W samples for GANSpace's PCA", type=sample_count)
    seed: int = option(0, "GANSpace's samples and the random directions, 0 .. 2^32 - 1", type=seed_flag)


CONFIG = DirectionsConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_flags(p)
    add_config_flags(p, DirectionsConfig)


def check(args: argparse.Namespace) -> None:
    method = args.method or DirectionsConfig.method
    if method == "sefa" and args.kind == "z":
        raise UsageError("--method sefa finds W directions (the eigenvectors of the style weights); drop --kind z")
    if method != "ganspace" and args.samples is not None:
        raise UsageError(f"--samples sets GANSpace's W samples; --method {method} draws none")
    if method == "sefa" and args.seed is not None:
        raise UsageError("--method sefa is deterministic; drop --seed")
    if method == "ganspace" and args.samples is not None and args.count is not None and args.count > args.samples:
        raise UsageError(f"--count {args.count} principal directions need at least as many --samples "
                         f"(got {args.samples})")


def run(args: argparse.Namespace) -> None:
    c = DirectionsConfig.from_args(args)
    G = load_generator(args)
    if c.method in ("ganspace", "sefa") and c.count > G.w_dim:
        raise UsageError(f"--count {c.count}: {c.method} finds at most w_dim = {G.w_dim} directions of this generator")
    if c.method == "ganspace":
        dirs = ganspace(G, n_samples=c.samples, n_components=c.count, kind=c.kind, seed=c.seed, scale_by_std=True)
    elif c.method == "sefa":
        dirs = sefa(G, n_components=c.count)
    else:
        dirs = random_directions(c.count, G.z_dim if c.kind == "z" else G.w_dim, kind=c.kind, seed=c.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{c.method}_{'w' if c.method == 'sefa' else c.kind}.safetensors"
    save_directions(path, dirs)
    print(f"wrote {len(dirs)} {c.method} directions to {path}")
