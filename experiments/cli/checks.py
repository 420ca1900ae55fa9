"""The checks that need several flags at once, run after parsing and before a command does any work.

argparse types (`experiments.argtypes`) check each flag alone: ranges, finite numbers, names, files
that exist. The checks here refuse what the flags cannot do together, with a `UsageError` that
`experiments.cli.main` reports as one line and exit status 2:

- a flag that the other flags make ineffective (--n-targets with --targets FILES, --lambda-per with
  --perceptual none, encoder files without --init encoder, --samples or --seed for SeFa, ...): a flag
  given is a flag that does something;
- a value past what the named data hold (--n-targets beyond the held-out set);
- files the flags imply: the alignment file --paste-back reads, aligned file names two photos (or a
  photo and an earlier run in --out) would both write.

Checks that need the generator or a file's contents (--count beyond its w_dim, --index beyond the
direction file, --space against the code file) are made by the command as soon as it has them, still
before any work is done.
"""

from __future__ import annotations

import argparse
from typing import Dict, Optional, Tuple

from encoders import COMPENSATION_HEADS
from latentspaces import assets
from latentspaces.align import MAX_TRANSFORM
from latentspaces.errors import ModelChoiceError
from latentspaces.metrics.perceptual import D_FEATURES_RESOLUTION, DEFAULT_PERCEPTUAL
from latentspaces.metrics.perceptual import perceptual_name
from latentspaces.spaces import is_f_space
from latentspaces.storage import tensor_shapes

from ..app.server import check_address
from ..argtypes import HELDOUT, UsageError
from ..photos import alignment_for, check_photos
from optimizers.recipes import RECIPES

from .settings import AlignSettings, IdentityCurvesSettings, InvertSettings, PairedSettings, recipe_flag


def perceptual_flag(args: argparse.Namespace) -> str:
    """--perceptual as given, or the library's default ('auto': LPIPS-VGG when installed, else D-features)."""
    return DEFAULT_PERCEPTUAL if args.perceptual is None else args.perceptual


def perceptual_resolution(args: argparse.Namespace) -> Optional[int]:
    """The image size a perceptual distance must fit, known before the generator is loaded: the default
    model's 64 px, or None for another generator (D-features is the default model's distance)."""
    return D_FEATURES_RESOLUTION if args.generator == "default" else None


def heldout_count() -> int:
    """How many held-out targets are shipped (read from the file's tensor table, no pixels)."""
    return tensor_shapes(assets.asset_path("heldout-targets"))["images"][0][0]


def check_targets(args: argparse.Namespace) -> None:
    """--targets and --n-targets: a count only for the held-out set, and no more than it holds."""
    n = getattr(args, "n_targets", None)
    if n is None:
        return
    if args.targets not in (None, HELDOUT):
        raise UsageError(f"--n-targets {n} counts held-out targets; with --targets FILES every file is inverted "
                         "(name fewer files instead)")
    count = heldout_count()
    if n > count:
        raise UsageError(f"--n-targets {n}: the held-out set has {count} targets (give 1 .. {count})")


def check_perceptual(args: argparse.Namespace, used: bool = True) -> None:
    """--perceptual and --lambda-per: a weight needs a distance, and D-features exist for the default model only."""
    name = perceptual_flag(args)
    if name == "none" and getattr(args, "lambda_per", None):
        raise UsageError(f"--lambda-per {args.lambda_per:g} weighs the perceptual distance, but --perceptual is none")
    if used:
        try:
            perceptual_name(name, perceptual_resolution(args))
        except ModelChoiceError as e:
            raise UsageError(f"--perceptual: {e}") from None


def check_inversion(args: argparse.Namespace) -> None:
    """compare, identity-curves, compensation: targets and the perceptual distance (always reported)."""
    check_targets(args)
    check_perceptual(args)


def compensation_plan(args: argparse.Namespace) -> Tuple[Tuple[str, ...], Dict[str, str]]:
    """(methods, head name -> name or file) of a compensation run: --methods, or base, every head given by
    its flag or installed as default-<head>, pti and fzplus."""
    heads = {}
    for head in COMPENSATION_HEADS:
        given = getattr(args, head)
        if given is not None:
            heads[head] = given
        elif assets.installed(f"default-{head}") and (args.methods is None or head in args.methods):
            heads[head] = f"default-{head}"
    methods = args.methods or ("base", *heads, "pti", "fzplus")
    return tuple(methods), {h: spec for h, spec in heads.items() if h in methods}


def check_compensation(args: argparse.Namespace) -> None:
    """compensation: the inversion flags, and a network for every head --methods names; a head flag is used."""
    check_inversion(args)
    check_recipe(args)
    methods, heads = compensation_plan(args)
    missing = [m for m in methods if m in COMPENSATION_HEADS and m not in heads]
    if missing:
        m = missing[0]
        raise UsageError(f"--methods names {m}, but default-{m} is not installed "
                         f"({assets.ASSET_DIR / assets.ASSETS['default-' + m].file}); train one with "
                         f"`{assets.ASSETS['default-' + m].made_by}` and pass --{m} FILE")
    unused = [f"--{h}" for h in COMPENSATION_HEADS if getattr(args, h) is not None and h not in methods]
    if unused:
        raise UsageError(f"{', '.join(unused)} given but --methods leaves {'it' if len(unused) == 1 else 'them'} out")


def check_recipe(args: argparse.Namespace) -> None:
    """--quick and --recipe name one preset; the start's flags (--seed, encoder files, --lambda-reg) match the
    recipe's start, its init changed by --init included."""
    if getattr(args, "quick", False) and args.recipe not in (None, "quick"):
        raise UsageError(f"--quick is --recipe quick; it contradicts --recipe {args.recipe} (give one of them)")
    if not hasattr(args, "init"):
        return   # compensation: its F/Z+ method always starts from the F encoder
    init = args.init if args.init is not None else RECIPES[recipe_flag(args)].init
    where = f"--init {init}" if args.init is not None else f"recipe {recipe_flag(args)} (init {init})"
    if getattr(args, "seed", None) is not None and init != "random" and args.command != "identity-curves":
        raise UsageError(f"--seed matters only with --init random: with {where} nothing in {args.command} is random "
                         "(leave --seed out, or start from random codes with --init random)")
    if init != "encoder":
        given = [flag for flag, value in (("--f-encoder", args.f_encoder), ("--wplus-encoder", args.wplus_encoder),
                                          ("--lambda-reg", args.lambda_reg)) if value is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'matters' if len(given) == 1 else 'matter'} only when the codes "
                             f"start from the encoders (this run, {where}, starts from "
                             f"{'the mean' if init == 'mean' else 'random codes'}; give --init encoder)")


def check_compare(args: argparse.Namespace) -> None:
    check_inversion(args)
    check_recipe(args)


def check_identity_curves(args: argparse.Namespace) -> None:
    check_inversion(args)
    check_recipe(args)
    if args.identity == "none":
        raise UsageError("identity-curves measures identity: give --identity dlib or facenet")
    s = IdentityCurvesSettings.from_args(args)
    if s.index is not None and args.targets in (None, HELDOUT) and s.index >= s.n_targets:  # held-out: known count
        raise UsageError(f"--index {s.index}: the run has {s.n_targets} targets (give 0 .. {s.n_targets - 1})")


def check_f_layer_sweep(args: argparse.Namespace) -> None:
    """f-layer-sweep: the inversion flags; only F spaces; the identity it measures."""
    check_inversion(args)
    check_recipe(args)
    if args.identity == "none":
        raise UsageError("f-layer-sweep measures identity: give --identity dlib or facenet")
    others = [name for name in (args.spaces or ()) if not is_f_space(name)]
    if others:
        raise UsageError(f"--spaces {','.join(others)}: the sweep moves the F layer, so it takes F spaces only "
                         "(FZPlus, FWPlus, FZ, FWPlusPN)")


def check_align(args: argparse.Namespace) -> None:
    """align: the photos (folders expanded; args.photos becomes one flat list), the size of the transform."""
    args.photos = [f for files in args.photos for f in files]
    s = AlignSettings.from_args(args)
    if s.size * s.supersample > MAX_TRANSFORM:
        raise UsageError(f"--size {s.size} x --supersample {s.supersample} = {s.size * s.supersample} px per side "
                         f"exceeds {MAX_TRANSFORM}; lower --supersample")
    check_photos(args.photos, args.out)


def check_invert(args: argparse.Namespace) -> None:
    """invert uses a perceptual distance only in its loss: --perceptual without a weight does nothing;
    --align aligns photo files."""
    check_targets(args)
    check_recipe(args)
    if args.align:
        if args.targets in (None, HELDOUT):
            raise UsageError("--align finds and aligns the faces of photos: give --targets PHOTO,... (the held-out "
                             "targets are aligned already)")
        check_photos(args.targets, args.out)
    elif args.face is not None:
        raise UsageError("--face picks a face of each photo: it goes with --align")
    recipe = InvertSettings.from_args(args).recipe
    weight = recipe.lambda_per
    if args.perceptual not in (None, "none") and weight == 0:
        raise UsageError(f"--perceptual {args.perceptual} does nothing with --lambda-per 0 (recipe {recipe.name}); "
                         "give --lambda-per too")
    check_perceptual(args, used=weight > 0)


def check_paired(args: argparse.Namespace) -> None:
    s = PairedSettings.from_args(args)
    if s.b is not None and s.a in s.b:
        raise UsageError(f"--b {','.join(s.b)} includes --a {s.a}; a space is not compared with itself")


def check_directions(args: argparse.Namespace) -> None:
    method = args.method or "ganspace"
    if method == "sefa" and args.kind == "z":
        raise UsageError("--method sefa finds W directions (the eigenvectors of the style weights); drop --kind z")
    if method != "ganspace" and args.samples is not None:
        raise UsageError(f"--samples sets GANSpace's W samples; --method {method} draws none")
    if method == "sefa" and args.seed is not None:
        raise UsageError("--method sefa is deterministic; drop --seed")
    if method == "ganspace" and args.samples is not None and args.count is not None and args.count > args.samples:
        raise UsageError(f"--count {args.count} principal directions need at least as many --samples "
                         f"(got {args.samples})")


def check_edit(args: argparse.Namespace) -> None:
    """--alignment and --mask serve --paste-back, which needs an alignment file."""
    if not args.paste_back:
        given = [flag for flag, value in (("--alignment", args.alignment), ("--mask", args.mask)) if value is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'matters' if len(given) == 1 else 'matter'} only with "
                             "--paste-back")
        return
    alignment_for(args.codes, args.alignment)


def check_app(args: argparse.Namespace) -> None:
    """app: the address can be listened on (the models take seconds to load; a taken port is said first)."""
    check_address(args.host, args.port)


def check_nothing(args: argparse.Namespace) -> None:
    """For the commands whose flags argparse checks completely."""


__all__ = ["DEFAULT_PERCEPTUAL", "check_align", "check_app", "check_compare", "check_directions", "check_edit",
           "check_identity_curves", "check_inversion", "check_invert", "check_nothing", "check_paired",
           "check_perceptual", "check_targets", "heldout_count", "perceptual_flag", "perceptual_resolution"]
