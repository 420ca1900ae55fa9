"""What several `latentspaces` commands share: the machine flags, the inversion commands' resources, their checks.

A command's numbers come from its config (`experiments.config`); the flags here pick files, models and
devices, the things a config does not hold. The checks refuse what the flags cannot do together, with a
`UsageError` that `experiments.cli.main` reports as one line and exit status 2: a flag that the other
flags make ineffective (--n-targets with --targets FILES, --lambda-per with --perceptual none, encoder
files without --init encoder, ...; a flag given is a flag that does something), or a value past what the
named data hold (--n-targets beyond the held-out set). Checks that need the generator or a file's
contents are made by the command as soon as it has them, still before any work is done.

The resources (`load_generator`, `load_targets`, `load_perceptual`, `load_identity`, `load_encoders`,
`pn_stats_for`) are each made once per command and handed down whole.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Type

import torch

import latentspaces as ls
from latentspaces import assets
from latentspaces.errors import ModelChoiceError
from latentspaces.interfaces import CodeInitializer, IdentitySimilarity, PerceptualDistance
from latentspaces.images import load_images
from latentspaces.metrics.identity import DEFAULT_IDENTITY, IDENTITY_CHOICES, make_identity
from latentspaces.metrics.perceptual import D_FEATURES_RESOLUTION, make_perceptual, perceptual_name
from latentspaces.progress import status
from optimizers import InversionRecipe
from optimizers.recipes import RECIPES

from ..argtypes import (DEFAULT_DEVICE, HELDOUT, UsageError, device_name, encoder_spec, generator_spec, int_in, non_negative_int,
                        out_dir, positive_int, target_spec)
from ..config import Config, add_config_flags, recipe_flag
from ..distributed import World
from ..studies.inversions import recipe_encoders, recipe_line



# ---------------------------------------------------------------------------------- flags
def add_machine_flags(p: argparse.ArgumentParser, out_help: str = "output folder", out_type=out_dir,
                      out: bool = True) -> None:
    """--out (unless out=False), --generator, --device, --threads."""
    if out:
        p.add_argument("--out", required=True, type=out_type, help=out_help)
    p.add_argument("--generator", default=assets.DEFAULT_GENERATOR, type=generator_spec,
                   help=f"'{assets.DEFAULT_GENERATOR}' or a checkpoint path (.pt, .pkl, .safetensors)")
    p.add_argument("--device", default=DEFAULT_DEVICE, type=device_name, help="cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=int_in(1, 1024), default=None,
                   help="compute threads of this process (default: OMP_NUM_THREADS if set, else the usable CPUs "
                        "less the machine's load, split over local ranks; latentspaces.threads)")


def add_quick_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="the same as --recipe quick: minutes on a CPU, 8 targets")


def add_targets_flag(p: argparse.ArgumentParser, help: str = "'heldout' (default) or comma-separated image "
                                                             "files/folders") -> None:
    p.add_argument("--targets", type=target_spec, default=None, help=help)


def add_identity_flag(p: argparse.ArgumentParser, none: bool = True) -> None:
    choices = IDENTITY_CHOICES if none else [c for c in IDENTITY_CHOICES if c != "none"]
    p.add_argument("--identity", default=DEFAULT_IDENTITY, choices=choices,
                   help=f"face-identity similarity scored per image (default {DEFAULT_IDENTITY}: dlib's ResNet "
                        "embedding, calibrated on the targets" + ("; 'none' skips it, `score-identity` fills it later"
                                                                  if none else "") + ")")


def add_encoder_flags(p: argparse.ArgumentParser) -> None:
    """--f-encoder and --wplus-encoder: the starts of recipe init 'encoder'."""
    p.add_argument("--f-encoder", type=encoder_spec, default=None,
                   help=f"F encoder name or file (init encoder; default {assets.DEFAULT_F_ENCODER})")
    p.add_argument("--wplus-encoder", type=encoder_spec, default=None,
                   help=f"W+ encoder name or file (init encoder; default {assets.DEFAULT_WPLUS_ENCODER})")


def add_face_flag(p: argparse.ArgumentParser, scope: str = "") -> None:
    p.add_argument("--face", type=non_negative_int, default=None,
                   help=f"only face K of each photo{scope} (0 the most confident; the printout lists each photo's faces "
                        "and the candidates dropped as not faces)")


def add_workers_flags(p: argparse.ArgumentParser, compile: bool = True) -> None:
    p.add_argument("--workers", type=positive_int, default=1,
                   help="local processes sharing the jobs (torchrun ranks with cores/N threads each; default 1); "
                        "2 on a 2-core CPU did 1.22x the work of 1 (BENCHMARKS.md; measured before the layers' speed-ups)")
    if compile:
        p.add_argument("--compile", action="store_true",
                       help="torch.compile each inversion step (equal to float rounding; no faster on the 2-core CPU "
                            "measured, BENCHMARKS.md; try it on a GPU)")


def add_inversion_flags(p: argparse.ArgumentParser, config: Type[Config], recipe_fields: Sequence[str] = (),
                        encoders: bool = True, workers: bool = True, compile: bool = True) -> None:
    """The flags of a command that inverts a target set: the machine, --quick, --targets, the config's fields
    (with `recipe_fields`, all the recipe's by default), --identity, the encoders and the workers."""
    add_machine_flags(p)
    add_quick_flag(p)
    add_targets_flag(p)
    add_config_flags(p, config, **({"recipe_fields": recipe_fields} if recipe_fields else {}))
    add_identity_flag(p)
    if encoders:
        add_encoder_flags(p)
    if workers:
        add_workers_flags(p, compile)


# ---------------------------------------------------------------------------------- checks
def perceptual_resolution(args: argparse.Namespace) -> Optional[int]:
    """The image size a perceptual distance must fit, known before the generator is loaded: the default
    model's 64 px, or None for another generator (D-features is the default model's distance)."""
    return D_FEATURES_RESOLUTION if args.generator == assets.DEFAULT_GENERATOR else None


def check_targets(args: argparse.Namespace) -> None:
    """--targets and --n-targets: a count only for the held-out set, and no more than it holds."""
    n = getattr(args, "n_targets", None)
    if n is None:
        return
    if args.targets not in (None, HELDOUT):
        raise UsageError(f"--n-targets {n} counts held-out targets; with --targets FILES every file is inverted "
                         "(name fewer files instead)")
    count = assets.heldout_count()
    if n > count:
        raise UsageError(f"--n-targets {n}: the held-out set has {count} targets (give 1 .. {count})")


def check_perceptual(args: argparse.Namespace, recipe: InversionRecipe, used: bool = True) -> None:
    """--perceptual and --lambda-per: a weight needs a distance, and D-features exist for the default model only."""
    if recipe.perceptual == "none" and getattr(args, "lambda_per", None):
        raise UsageError(f"--lambda-per {args.lambda_per:g} weighs the perceptual distance, but --perceptual is none")
    if used:
        try:
            perceptual_name(recipe.perceptual, perceptual_resolution(args))
        except ModelChoiceError as e:
            raise UsageError(f"--perceptual: {e}") from None


def check_recipe(args: argparse.Namespace, seeded: bool = False) -> None:
    """--quick and --recipe name one preset; the start's flags (--seed, encoder files, --lambda-reg) match the
    recipe's start, its init changed by --init included. `seeded`: --seed also draws something else."""
    if getattr(args, "quick", False) and args.recipe not in (None, "quick"):
        raise UsageError(f"--quick is --recipe quick; it contradicts --recipe {args.recipe} (give one of them)")
    if not hasattr(args, "init"):
        return   # compensation and the F-layer sweep choose their own start
    init = args.init if args.init is not None else RECIPES[recipe_flag(args)].init
    where = f"--init {init}" if args.init is not None else f"recipe {recipe_flag(args)} (init {init})"
    if getattr(args, "seed", None) is not None and init != "random" and not seeded:
        raise UsageError(f"--seed matters only with --init random: with {where} nothing in {args.command} is random "
                         "(leave --seed out, or start from random codes with --init random)")
    if init != "encoder":
        given = [flag for flag, value in (("--f-encoder", args.f_encoder), ("--wplus-encoder", args.wplus_encoder),
                                          ("--lambda-reg", args.lambda_reg)) if value is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'matters' if len(given) == 1 else 'matter'} only when the codes "
                             f"start from the encoders (this run, {where}, starts from "
                             f"{'the mean' if init == 'mean' else 'random codes'}; give --init encoder)")


def check_inversion(args: argparse.Namespace, recipe: InversionRecipe, seeded: bool = False) -> None:
    """compare, identity-curves, compensation, f-layer-sweep: targets, the recipe's flags and the perceptual
    distance (always reported)."""
    check_targets(args)
    check_recipe(args, seeded)
    check_perceptual(args, recipe)


def check_measures_identity(args: argparse.Namespace) -> None:
    if args.identity == "none":
        raise UsageError(f"{args.command} measures identity: give --identity dlib or facenet")


# ---------------------------------------------------------------------------------- resources, made once
def load_generator(args: argparse.Namespace) -> ls.Generator:
    status(f"loading the generator {args.generator} on {args.device} ...")
    return ls.load_generator(args.generator, device=args.device)


def load_targets(args: argparse.Namespace, G: ls.Generator, n: int) -> torch.Tensor:
    """The targets [n, 3, R, R] in [-1, 1]: the shipped held-out faces, or the image files of --targets."""
    if args.targets in (None, HELDOUT):
        if G.resolution != 64:
            raise UsageError(f"the shipped held-out targets are 64 px faces and this generator makes {G.resolution} "
                             "px images; pass --targets FILES")
        return assets.heldout_targets(n).to(args.device)
    return load_images(args.targets, G.resolution).to(args.device)


def load_perceptual(args: argparse.Namespace, recipe: InversionRecipe) -> Optional[PerceptualDistance]:
    """The distance the recipe names ('auto' by default), from the library's one lookup by name
    (`check_perceptual` has refused a name that does not fit the generator already)."""
    return make_perceptual(recipe.perceptual, perceptual_resolution(args), args.device)


def load_identity(args: argparse.Namespace) -> Optional[IdentitySimilarity]:
    return make_identity(args.identity, args.device)


def load_encoders(args: argparse.Namespace, recipe: InversionRecipe,
                  spaces: Sequence[str]) -> Dict[str, CodeInitializer]:
    """Space name -> starting encoder under `recipe` ({} unless it starts from the encoders), from the flags."""
    return recipe_encoders(recipe, spaces, args.f_encoder or assets.DEFAULT_F_ENCODER,
                           args.wplus_encoder or assets.DEFAULT_WPLUS_ENCODER, args.device)


@dataclass
class InversionResources:
    """What a command that inverts a target set runs on, made once, in the order that fails fastest: the models
    that may be missing from this machine first, then the generator and the targets."""

    perceptual: Optional[PerceptualDistance]
    identity: Optional[IdentitySimilarity]
    encoders: Dict[str, CodeInitializer]     # space name -> start (recipe init 'encoder')
    G: ls.Generator
    targets: torch.Tensor                    # [N, 3, R, R] in [-1, 1]

    @classmethod
    def load(cls, args: argparse.Namespace, recipe: InversionRecipe, spaces: Sequence[str],
             n_targets: int) -> "InversionResources":
        perceptual, identity = load_perceptual(args, recipe), load_identity(args)
        encoders = load_encoders(args, recipe, spaces)
        G = load_generator(args)
        return cls(perceptual, identity, encoders, G, load_targets(args, G, n_targets))


def pn_stats_for(G: ls.Generator, spaces: Sequence[str], n_samples: int) -> Optional[ls.PNStats]:
    """G's P_N statistics when one of `spaces` uses them (P_N, F/W+(P_N)), else None (fitted once and cached;
    under torchrun rank 0 fits, the others read the cache)."""
    if not any(ls.SPACES[name].uses_pn_stats for name in spaces):
        return None
    world = World.current()
    return world.main_first(lambda: ls.PNStats.fit(G, n_samples=n_samples, progress=world.main))


# ---------------------------------------------------------------------------------- output
def print_table(out: Path, name: str, wrote: str, since: Optional[float] = None) -> None:
    print((out / f"{name}.md").read_text())
    print(f"wrote {wrote}" + ("" if since is None else f" ({time.time() - since:.0f} s)"))


def announce(recipe: InversionRecipe, perceptual: Optional[PerceptualDistance]) -> None:
    """Print the recipe the run inverts with (rank 0), the distance it resolved to included."""
    if World.current().main:
        print(recipe_line(recipe, perceptual))


__all__ = ["DEFAULT_DEVICE", "InversionResources", "add_encoder_flags", "add_face_flag", "add_identity_flag",
           "add_inversion_flags", "add_machine_flags",
           "add_quick_flag", "add_targets_flag", "add_workers_flags", "announce", "check_inversion",
           "check_measures_identity", "check_perceptual", "check_recipe", "check_targets", "load_encoders",
           "load_generator", "load_identity", "load_perceptual", "load_targets", "perceptual_resolution",
           "pn_stats_for", "print_table"]
