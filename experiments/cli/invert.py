"""`latentspaces invert`: invert images into one space, with a recipe (the paper's by default).

    latentspaces invert --space FZPlus --targets face.png --out runs/me
    latentspaces invert --align --targets photo.jpg --out runs/me   # align on the fly, then invert every face
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from latentspaces.align import FaceAligner
from latentspaces.fingerprints import generator_fingerprint
from latentspaces.images import image_files, is_gray_batch, to_uint8
from latentspaces.progress import status
from latentspaces.spaces import build_space
from optimizers import PAPER, RECIPES, HybridInverter, InversionRecipe

from ..argtypes import HELDOUT, UsageError, positive_int, space_name
from ..argtypes import seed as seed_flag
from ..config import Config, add_config_flags, option
from ..figures import labelled_grid
from ..photos import align_photos, check_photos
from ..studies.inversions import inversion_settings, recipe_line
from ..studies.presets import PN_SAMPLES
from .common import (add_encoder_flags, add_face_flag, add_machine_flags, add_quick_flag, add_targets_flag,
                     check_perceptual, check_recipe, check_targets, load_encoders, load_generator, load_perceptual,
                     load_targets, pn_stats_for)

NAME = "invert"
HELP = "invert images into one space"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class InvertConfig(Config):
    """Images into one space, with a recipe (default the paper's)."""

    recipe: InversionRecipe = PAPER
    space: str = option("FZPlus", "the space to invert into", type=space_name)
    n_targets: int = option(8, "number of held-out targets (without --targets)", type=positive_int, names=("--n",))
    pn_samples: int = PN_SAMPLES["quick"]   # W samples of P_N's statistics (the cached quick fit)
    seed: int = option(0, "the start of --init random, 0 .. 2^32 - 1", type=seed_flag)


InvertConfig.PRESETS = {name: InvertConfig(recipe=recipe) for name, recipe in RECIPES.items()}


CONFIG = InvertConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_flags(p)
    add_quick_flag(p)
    add_targets_flag(p)
    add_config_flags(p, InvertConfig)
    add_encoder_flags(p)
    p.add_argument("--align", action="store_true",
                   help="--targets are photos: align every face (as `latentspaces align` at the generator's "
                        "resolution, into --out) and invert the faces; `edit --paste-back` then finds them")
    add_face_flag(p, " (with --align)")


def check(args: argparse.Namespace) -> None:
    """invert uses a perceptual distance only in its loss: --perceptual without a weight does nothing; --align
    aligns photo files."""
    check_targets(args)
    check_recipe(args)
    if args.align:
        if args.targets in (None, HELDOUT):
            raise UsageError("--align finds and aligns the faces of photos: give --targets PHOTO,... (the held-out "
                             "targets are aligned already)")
        check_photos(args.targets, args.out)
    elif args.face is not None:
        raise UsageError("--face picks a face of each photo: it goes with --align")
    recipe = InvertConfig.from_args(args).recipe
    if args.perceptual not in (None, "none") and recipe.lambda_per == 0:
        raise UsageError(f"--perceptual {args.perceptual} does nothing with --lambda-per 0 (recipe {recipe.name}); "
                         "give --lambda-per too")
    check_perceptual(args, recipe, used=recipe.lambda_per > 0)


def run(args: argparse.Namespace) -> None:
    c = InvertConfig.from_args(args)
    status(f"inverting into {c.space}: loading the loss, the encoder and the generator ...")
    perceptual = load_perceptual(args, c.recipe) if c.recipe.lambda_per > 0 else None   # used only in the loss
    print(recipe_line(c.recipe, perceptual), flush=True)
    encoder = load_encoders(args, c.recipe, [c.space]).get(c.space)
    G = load_generator(args)
    out = Path(args.out)
    meta = {}
    if args.align:   # the photos' faces, aligned at the generator's resolution into OUT, are the targets
        names, _ = align_photos(args.targets, out, FaceAligner(size=G.resolution), face=args.face)
        args.targets = tuple(out / name for name in names)
        meta["alignment"] = "alignment.json"
    if args.targets not in (None, HELDOUT):
        meta["targets"] = [str(t) for t in args.targets]   # `edit --paste-back` finds each code's face by name
    targets = load_targets(args, G, c.n_targets)
    meta["gray_targets"] = [bool(g) for g in is_gray_batch(targets)]   # `edit` shows their edits gray
    if any(meta["gray_targets"]):
        print(f"note: {sum(meta['gray_targets'])} target(s) are grayscale; the generator renders colour, so their "
              "reconstructions are in colour, and `edit` shows and pastes back their edits in gray")
    space = build_space(c.space, G, pn_stats_for(G, [c.space], c.pn_samples), **c.recipe.space_options(c.space))
    res = HybridInverter.from_recipe(space, c.recipe, perceptual, encoder).invert(targets, seed=c.seed)
    out.mkdir(parents=True, exist_ok=True)
    used = inversion_settings(G, c.recipe, perceptual, None, len(targets), c.seed)
    res.code.save(out / "codes.safetensors", space=c.space, generator_fingerprint=generator_fingerprint(G),
                  generator=str(args.generator), steps=c.recipe.steps, recipe=c.recipe.name,
                  inversion={k: v for k, v in used.items() if k not in ("generator", "identity", "chunk")},
                  space_options=space.options(), **meta)
    per_image = (res.images - targets).square().flatten(1).mean(1)   # after the last step
    files = image_files(args.targets) if args.targets not in (None, HELDOUT) else []
    names = [f.name for f in files] if len(files) == len(targets) else [f"target {i}" for i in range(len(targets))]
    labelled_grid(out / "inversion.png", [to_uint8(torch.stack([t, r])) for t, r in zip(targets, res.images)],
                  names, ["target", f"{c.space}, {c.recipe.steps} steps"],
                  captions=[["", f"MSE {m:.4f}"] for m in per_image.tolist()], tile_inches=1.8,
                  title=f"inversion into {c.space} ({c.recipe.name} recipe)")
    print(f"{c.space}: final MSE {per_image.mean():.4f} after {c.recipe.steps} steps; wrote {out}/codes.safetensors, "
          "inversion.png")
