"""The settings of each `latentspaces` command: one frozen dataclass per command, with named presets.

The presets are named after the inversion recipes (`optimizers.recipes`): `quick` finishes both main
experiments in minutes on a 2-core CPU (8 targets, the quick recipe), `full` and `paper` use all 64
held-out targets, 1e6 P_N samples and the full or paper recipe (the paper's: encoder start, lambda_per
= lambda_reg = 10, 1200 steps at lr 0.01). `paper` is the default. Commands that invert hold the
recipe whole (`recipe`), so the studies and `HybridInverter.from_recipe` get the same object from the
command line as from Python. Commands without a recipe have one setting under every name.

`from_args` starts from the preset --recipe (or --quick) picks and replaces each field whose flag was
given: a flag left out is None and means "the preset's value"; any value given is used as given, 0
included (argparse has checked its range already, see `experiments.argtypes`). A recipe changed by a
flag is renamed to say so ('paper, steps=100'), and that name is what a run folder records.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Dict, Optional, Tuple, Type, TypeVar

from latentspaces.spaces import SPACE_ORDER
from optimizers import FULL, PAPER, QUICK, InversionRecipe
from optimizers.recipes import DEFAULT_RECIPE, RECIPES

from ..studies.identity_curves import CURVE_SPACES
from ..studies.matched_edits import EDIT_SIZES

T = TypeVar("T", bound="Settings")
# The flags that change a recipe's fields (--perceptual changes recipe.perceptual), by recipe field.
RECIPE_FLAGS = ("steps", "lr", "lambda_per", "lambda_reg", "init", "perceptual")


def recipe_flag(args: argparse.Namespace) -> str:
    """The preset a command line picks: --recipe, 'quick' for --quick, else the default ('paper')."""
    name = getattr(args, "recipe", None)
    if name is not None:
        return name
    return "quick" if getattr(args, "quick", False) else DEFAULT_RECIPE


class Settings:
    """Base of the per-command settings: presets by recipe name, and `from_args`."""

    PRESETS: ClassVar[Dict[str, "Settings"]]

    @classmethod
    def preset(cls: Type[T], name: str) -> T:
        """The preset of recipe `name` ('quick', 'full', 'paper')."""
        return cls.PRESETS[name]  # type: ignore[return-value]

    @classmethod
    def from_args(cls: Type[T], args: argparse.Namespace) -> T:
        """The preset --recipe / --quick picks, with every field whose flag was given (not None) replaced by
        it; flags of recipe fields change the recipe (renamed to say so)."""
        base = cls.preset(recipe_flag(args))
        given = {f.name: getattr(args, f.name) for f in fields(cls)
                 if f.name != "recipe" and getattr(args, f.name, None) is not None}
        recipe: Optional[InversionRecipe] = getattr(base, "recipe", None)
        if recipe is not None:
            changes = {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k, None) is not None}
            given["recipe"] = recipe.replace(**changes)
        return replace(base, **given)


def _same(setting: Settings) -> Dict[str, Settings]:
    """One setting under every recipe name (commands that do not invert)."""
    return {name: setting for name in RECIPES}


@dataclass(frozen=True)
class CompareSettings(Settings):
    """`latentspaces compare`: invert the targets into each space."""

    n_targets: int                  # held-out targets 0 .. n_targets - 1
    recipe: InversionRecipe         # steps, lr, loss weights, start (optimizers.recipes)
    pn_samples: int                 # W samples the P_N statistics are fitted on
    chunk: int = 8                  # images inverted together; results are saved per chunk
    seed: int = 0                   # the start of recipe init 'random' (nothing else is random)
    spaces: Tuple[str, ...] = tuple(SPACE_ORDER)


CompareSettings.PRESETS = {
    "quick": CompareSettings(n_targets=8, recipe=QUICK, pn_samples=100_000),
    "full": CompareSettings(n_targets=64, recipe=FULL, pn_samples=1_000_000),
    "paper": CompareSettings(n_targets=64, recipe=PAPER, pn_samples=1_000_000),
}


@dataclass(frozen=True)
class IdentityCurvesSettings(Settings):
    """`latentspaces identity-curves`: the inversions of `compare` (same fields, same files), then edits."""

    n_targets: int
    recipe: InversionRecipe
    pn_samples: int
    directions: int                 # GANSpace directions per kind
    direction_samples: int          # W samples for the GANSpace PCA
    chunk: int = 8
    seed: int = 0
    spaces: Tuple[str, ...] = tuple(CURVE_SPACES)
    index: Optional[int] = None     # target of the random-direction figure (None: the set's median face)
    edit_sizes: Tuple[float, ...] = EDIT_SIZES  # pixel changes at which identity is compared (() none)


IdentityCurvesSettings.PRESETS = {
    "quick": IdentityCurvesSettings(n_targets=8, recipe=QUICK, pn_samples=100_000, directions=3,
                                    direction_samples=50_000),
    "full": IdentityCurvesSettings(n_targets=64, recipe=FULL, pn_samples=1_000_000, directions=5,
                                   direction_samples=300_000),
    "paper": IdentityCurvesSettings(n_targets=64, recipe=PAPER, pn_samples=1_000_000, directions=5,
                                    direction_samples=300_000),
}


@dataclass(frozen=True)
class CompensationSettings(Settings):
    """`latentspaces compensation`: base W+ encoder vs the heads vs PTI vs HybridInverter F/Z+.

    The F/Z+ method always starts from the F encoder (it is the method); the recipe gives its steps, lr
    and loss weights."""

    n_targets: int
    recipe: InversionRecipe         # F/Z+ HybridInverter (PTI's perceptual weight is 1 whenever one is on)
    pivot_steps: int                # PTI pivot (W projection) steps
    tune_steps: int                 # PTI generator tuning steps
    directions: int                 # GANSpace directions per kind for the edit identity
    direction_samples: int
    seed: int = 0
    edit_sizes: Tuple[float, ...] = EDIT_SIZES  # pixel changes at which edit identity is compared (() none)


CompensationSettings.PRESETS = {
    "quick": CompensationSettings(n_targets=8, recipe=QUICK, pivot_steps=100, tune_steps=100, directions=3,
                                  direction_samples=50_000),
    "full": CompensationSettings(n_targets=64, recipe=FULL, pivot_steps=450, tune_steps=350, directions=5,
                                 direction_samples=300_000),
    "paper": CompensationSettings(n_targets=64, recipe=PAPER, pivot_steps=450, tune_steps=350, directions=5,
                                  direction_samples=300_000),
}


@dataclass(frozen=True)
class FLayerSweepSettings(Settings):
    """`latentspaces f-layer-sweep`: F/Z+ and F/W+ with f at each layer up to b16.conv0 (mean start)."""

    n_targets: int
    recipe: InversionRecipe         # steps, lr and weights; the study always starts from the mean code
    directions: int                 # GANSpace directions per kind
    direction_samples: int
    spaces: Tuple[str, ...] = ("FZPlus", "FWPlus")
    layers: Optional[Tuple[str, ...]] = None   # None: b4.conv1 .. b16.conv0
    edit_sizes: Tuple[float, ...] = EDIT_SIZES
    seed: int = 0


FLayerSweepSettings.PRESETS = {
    "quick": FLayerSweepSettings(n_targets=8, recipe=QUICK, directions=3, direction_samples=50_000),
    "full": FLayerSweepSettings(n_targets=64, recipe=FULL, directions=5, direction_samples=300_000),
    "paper": FLayerSweepSettings(n_targets=64, recipe=PAPER, directions=5, direction_samples=300_000),
}


@dataclass(frozen=True)
class ScoreIdentitySettings(Settings):
    """`latentspaces score-identity`: the P_N statistics the folder was inverted with."""

    pn_samples: int


ScoreIdentitySettings.PRESETS = {name: ScoreIdentitySettings(pn_samples=c.pn_samples)
                                 for name, c in CompareSettings.PRESETS.items()}


@dataclass(frozen=True)
class PairedSettings(Settings):
    """`latentspaces paired`: one space against others on the rows already in OUT."""

    a: str = "FZPlus"
    b: Optional[Tuple[str, ...]] = None   # None: every other space with rows in OUT
    alpha: float = 2.0                    # |alpha| of the edits compared
    n_targets: Optional[int] = None       # None: all targets


PairedSettings.PRESETS = _same(PairedSettings())


@dataclass(frozen=True)
class InvertSettings(Settings):
    """`latentspaces invert`: images into one space, with a recipe (default paper's)."""

    recipe: InversionRecipe
    space: str = "FZPlus"
    n_targets: int = 8
    pn_samples: int = 100_000
    seed: int = 0                   # the start of recipe init 'random'


InvertSettings.PRESETS = {name: InvertSettings(recipe=r) for name, r in RECIPES.items()}


@dataclass(frozen=True)
class AlignSettings(Settings):
    """`latentspaces align`: every face of the photos, aligned as FFHQ was made (`latentspaces.align.FaceAligner`)."""

    size: int = 1024                      # side of the aligned images, px (FFHQ's 1024)
    supersample: int = 4                  # the square is resampled at size * supersample px first (FFHQ: 4x)
    detector: str = "hog"                 # 'hog' or 'cnn' (dlib's detectors)
    upsample: int = 1                     # times the detector doubles the photo (each finds faces half as large)
    min_score: float = 0.3                # detections scoring below are reported as dropped, not examined
    refine: bool = True                   # a second landmark pass on the aligned face


AlignSettings.PRESETS = _same(AlignSettings())


@dataclass(frozen=True)
class EditSettings(Settings):
    """`latentspaces edit`: codes along one direction."""

    space: str = "FZPlus"                 # the codes' space when their file does not say
    index: int = 0                        # which direction of the file
    kind: Optional[str] = None            # kind of a foreign direction file: 'z' or 'w'
    alphas: Tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    pn_samples: int = 100_000
    mask: str = "face"                    # --paste-back blend: 'face' (landmark hull + forehead) or 'square'


EditSettings.PRESETS = _same(EditSettings())


@dataclass(frozen=True)
class DirectionsSettings(Settings):
    """`latentspaces directions`: find directions and save them."""

    method: str = "ganspace"              # 'ganspace', 'sefa' or 'random'
    kind: str = "w"                       # 'z' or 'w' (SeFa directions are always 'w')
    count: int = 10
    samples: int = 100_000                # W samples for the GANSpace PCA
    seed: int = 0


DirectionsSettings.PRESETS = _same(DirectionsSettings())


__all__ = ["AlignSettings", "CompareSettings", "CompensationSettings", "DirectionsSettings", "EditSettings",
           "FLayerSweepSettings",
           "IdentityCurvesSettings", "InvertSettings", "PairedSettings", "RECIPE_FLAGS", "ScoreIdentitySettings",
           "Settings", "recipe_flag"]
