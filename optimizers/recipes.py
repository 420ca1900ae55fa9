"""Inversion recipes: every number that decides an optimization-based inversion, in one named object.

A recipe is what `HybridInverter.from_recipe` and the studies of `experiments` take whole, so that a
Python call and the `latentspaces` command with the same recipe name run the same inversion:

    from optimizers import HybridInverter, RECIPES
    space = RECIPES["paper"].space("FZPlus", G)      # the space as the recipe runs it (its truncation)
    inv = HybridInverter.from_recipe(space, RECIPES["paper"], encoder=f_encoder)

The three named recipes:

- `paper`: "Revisiting Latent Space of GAN Inversion", Eqs. 1-4: start from the encoder (the F encoder
  in F spaces, Eq. 2; a W+ encoder for W-type spaces; Z and Z+ have none and start from their mean),
  then Adam at lr 0.01 for 1200 steps on MSE + 10 x perceptual + 10 x mean((f - f0)^2). The paper's
  perceptual distance is LPIPS; `perceptual='auto'` uses LPIPS-VGG where its backbone weights are on
  the machine and the D-features distance of the default model otherwise (the record says which).
  Departure: the paper's lambda_per = 10 is on the LPIPS scale; where D-features stands in, the same
  weight applies to another distance (on the default model's full-run reconstructions it ranged from
  0.010 in F/W+ to 1.16 in Z). As the released code, F/Z+, F/Z and W are truncated at psi 0.7 on their first
  8 ws inside every step (`RELEASED_TRUNCATION`; the paper's text does not mention it); the codes stay raw
  and the spaces built with `recipe.space_options(name)` render them truncated.
- `full`: the settings of this project's earlier full runs (the tables of docs/history.md): 1200
  steps, lr 0.01, MSE + 1 x perceptual, every space from its mean code, no anchor term.
- `quick`: minutes on a 2-core CPU: 100 steps at lr 0.05 from the mean code, pixel MSE only (the
  perceptual distance is still reported by the studies).

`recipe.replace(steps=...)` gives a modified copy whose name says what changed ('quick, steps=2'), so
a folder's recorded settings never call a modified recipe by a preset's name.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from latentspaces.spaces import LatentSpace, build_space

INITS = ("encoder", "mean", "random")
MAX_STEPS = 100_000   # the most Adam steps a recipe may ask for (at ~0.1 s a step on a 2-core CPU: ~3 hours a chunk)


def check_inversion_numbers(steps: int, lr: float, lambda_mse: float, lambda_per: float, lambda_reg: float,
                            where: str = "") -> None:
    """ValueError (prefixed by `where`) unless steps is a whole number in 0 .. MAX_STEPS, lr a finite number > 0
    and every loss weight finite and >= 0: the one check of an inversion's numbers (recipes and
    `HybridInverter` alike)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"{where}steps must be a whole number in 0 .. {MAX_STEPS}, got {steps!r}")
    if not (isinstance(lr, numbers.Real) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"{where}lr must be a finite number > 0, got {lr!r}")
    weights = {"lambda_mse": lambda_mse, "lambda_per": lambda_per, "lambda_reg": lambda_reg}
    bad = {k: v for k, v in weights.items() if not (isinstance(v, numbers.Real) and math.isfinite(v) and v >= 0)}
    if bad:
        raise ValueError(f"{where}loss weights must be finite and >= 0, got {bad}")


@dataclass(frozen=True)
class InversionRecipe:
    """The numbers of one inversion (Eq. 1 of "Revisiting Latent Space of GAN Inversion" and its optimizer)."""

    name: str                   # 'paper', 'full', 'quick', or a preset's name with its changes
    steps: int                  # Adam steps (0: the start itself)
    lr: float                   # Adam learning rate, > 0
    lambda_per: float           # weight of the perceptual distance, >= 0 (0: pixel loss only)
    lambda_reg: float           # weight of mean((f - f0)^2) on an encoder-started F space's base code, >= 0
    init: str                   # 'encoder' (the space's encoder where it has one, else the mean), 'mean', 'random'
    perceptual: str = "auto"    # the distance in the loss and the tables, by name (latentspaces.metrics.perceptual)
    lambda_mse: float = 1.0     # weight of the pixel MSE, >= 0
    truncated_spaces: Tuple[str, ...] = ()  # spaces (by class name) whose synthesis truncates at every step
    truncation_psi: float = 1.0             # their psi: ws 0 .. cutoff-1 become w_avg + psi (w - w_avg), in (0, 1]
    truncation_cutoff: Optional[int] = None  # how many leading ws are truncated (None: all)

    def __post_init__(self) -> None:
        check_inversion_numbers(self.steps, self.lr, self.lambda_mse, self.lambda_per, self.lambda_reg,
                                f"recipe {self.name!r}: ")
        if self.init not in INITS:
            raise ValueError(f"recipe {self.name!r}: init must be one of {INITS}, got {self.init!r}")
        psi, cutoff = self.truncation_psi, self.truncation_cutoff
        if not (isinstance(psi, numbers.Real) and 0 < psi <= 1):
            raise ValueError(f"recipe {self.name!r}: truncation_psi must be a number in (0, 1], got {psi!r}")
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Integral) or cutoff < 1):
            raise ValueError(f"recipe {self.name!r}: truncation_cutoff must be a whole number >= 1 or None, got {cutoff!r}")
        if not isinstance(self.truncated_spaces, tuple) or not all(isinstance(n, str) for n in self.truncated_spaces):
            raise ValueError(f"recipe {self.name!r}: truncated_spaces must be a tuple of space names, "
                             f"got {self.truncated_spaces!r}")

    def replace(self, **changes: object) -> "InversionRecipe":
        """A copy with `changes`; the name gains each field that now differs ('paper, steps=100')."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)} - {"name"}
        if unknown:
            raise TypeError(f"InversionRecipe has no field(s) {sorted(unknown)}")
        if "name" in changes:
            return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        changed = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not changed:
            return self
        name = ", ".join([self.name, *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in changed.items())])
        return dataclasses.replace(self, name=name, **changed)  # type: ignore[arg-type]

    def effective(self, perceptual: bool, encoder: bool) -> "InversionRecipe":
        """The recipe as it runs: no perceptual weight without a distance to weigh (`perceptual` False), and no
        anchor term unless the codes start from an encoder (`encoder`: init 'encoder' and an encoder for the
        space; the anchor pulls f toward the encoder's f0). The name is kept: the recipe asked for is the
        recipe run, with the weights that can take effect."""
        lambda_per = self.lambda_per if perceptual else 0.0
        lambda_reg = self.lambda_reg if encoder and self.init == "encoder" else 0.0
        return dataclasses.replace(self, lambda_per=lambda_per, lambda_reg=lambda_reg)

    def space_options(self, space: str) -> Dict[str, object]:
        """The keyword arguments a space of this name takes under this recipe: its truncation where the recipe
        truncates it ({} otherwise), for `build_space(space, G, **recipe.space_options(space))`."""
        if space not in self.truncated_spaces or self.truncation_psi == 1:
            return {}
        return {"truncation_psi": self.truncation_psi, "truncation_cutoff": self.truncation_cutoff}

    def space(self, name: str, G, pn_stats=None, **options) -> LatentSpace:
        """The space `name` over generator G as this recipe runs it (`space_options`; extra `options` go to the
        space's constructor): `PAPER.space("FZPlus", G)` is F/Z+ truncated as released."""
        return build_space(name, G, pn_stats, **self.space_options(name), **options)

    def record(self) -> Dict[str, object]:
        """The recipe as a run folder records it (JSON values; the truncation only where the recipe has one, so
        folders of untruncated recipes keep the record they were made with)."""
        record: Dict[str, object] = {"recipe": self.name, "steps": self.steps, "lr": self.lr,
                                     "lambda_mse": self.lambda_mse, "lambda_per": self.lambda_per,
                                     "lambda_reg": self.lambda_reg, "init": self.init}
        if self.truncated_spaces and self.truncation_psi != 1:
            record.update(truncated_spaces=list(self.truncated_spaces), truncation_psi=self.truncation_psi,
                          truncation_cutoff=self.truncation_cutoff)
        return record

    def describe(self) -> str:
        """One line: 'paper: 1200 Adam steps at lr 0.01 from the encoder, MSE + 10 x perceptual + 10 x anchor'."""
        start = {"encoder": "the encoders (mean where a space has none)", "mean": "the mean code",
                 "random": "one random code of the space's prior"}[self.init]
        loss = "MSE" if self.lambda_mse == 1 else f"{self.lambda_mse:g} x MSE"
        if self.lambda_per:
            loss += f" + {self.lambda_per:g} x perceptual ({self.perceptual})"
        if self.lambda_reg and self.init == "encoder":
            loss += f" + {self.lambda_reg:g} x mean((f - f0)^2)"
        text = f"{self.name}: {self.steps} Adam steps at lr {self.lr:g} from {start}; loss {loss}"
        if self.truncated_spaces and self.truncation_psi != 1:
            which = "all ws" if self.truncation_cutoff is None else f"ws 0-{self.truncation_cutoff - 1}"
            text += (f"; {', '.join(self.truncated_spaces)} truncated at psi {self.truncation_psi:g} on {which} "
                     "every step")
        return text


# The released scripts of "Revisiting Latent Space of GAN Inversion" (F/Z+, F/Z and W: invert_zp.py, invert_z.py,
# invert_w.py) pass each step's ws through the generator's truncation, psi 0.7 (--trunc_psi) on the first 8 ws
# (--trunc_layers), toward the checkpoint's w_avg; W+ and F/W+ (as BDInvert) are not truncated. The cutoff does not
# depend on the resolution: ws 0-7 drive the layers up to 32 px at 1024 px (18 ws), 256 px (14) and 64 px (10).
RELEASED_TRUNCATION = {"truncated_spaces": ("FZPlus", "FZ", "W"), "truncation_psi": 0.7, "truncation_cutoff": 8}
PAPER = InversionRecipe("paper", steps=1200, lr=0.01, lambda_per=10.0, lambda_reg=10.0, init="encoder",
                        **RELEASED_TRUNCATION)  # type: ignore[arg-type]
FULL = InversionRecipe("full", steps=1200, lr=0.01, lambda_per=1.0, lambda_reg=0.0, init="mean")
QUICK = InversionRecipe("quick", steps=100, lr=0.05, lambda_per=0.0, lambda_reg=0.0, init="mean")
RECIPES: Dict[str, InversionRecipe] = {r.name: r for r in (QUICK, FULL, PAPER)}
DEFAULT_RECIPE = "paper"


def recipe_named(name: str) -> InversionRecipe:
    """The recipe of that name, or ValueError listing the names."""
    if name not in RECIPES:
        raise ValueError(f"no inversion recipe {name!r}; the recipes are {', '.join(RECIPES)}")
    return RECIPES[name]


__all__ = ["DEFAULT_RECIPE", "FULL", "INITS", "MAX_STEPS", "RELEASED_TRUNCATION", "check_inversion_numbers", "InversionRecipe", "PAPER", "QUICK", "RECIPES", "recipe_named"]
