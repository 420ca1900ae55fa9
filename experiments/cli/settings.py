"""The settings of each `latentspaces` command: one frozen dataclass per command, with named presets.

`QUICK` finishes both main experiments in minutes on a 2-core CPU (pixel MSE only in the loss, the
perceptual distance still reported; 100 steps; 8 targets). `FULL` is the papers' setting (1200 steps,
all 64 held-out targets, perceptual loss, 1e6 P_N samples). Commands without a --quick flag have one
setting, and QUICK and FULL are that same one.

`from_args` starts from the preset the command line picks and replaces each field whose flag was
given: a flag left out is None and means "the preset's value"; any value given is used as given,
0 included (argparse has checked its range already, see `experiments.argtypes`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Optional, Tuple, Type, TypeVar

from latentspaces.spaces import SPACE_ORDER

from ..studies.identity_curves import CURVE_SPACES

T = TypeVar("T", bound="Settings")


class Settings:
    """Base of the per-command settings: presets QUICK and FULL, and `from_args`."""

    QUICK: ClassVar["Settings"]
    FULL: ClassVar["Settings"]

    @classmethod
    def preset(cls: Type[T], quick: bool) -> T:
        """QUICK or FULL."""
        return cls.QUICK if quick else cls.FULL

    @classmethod
    def from_args(cls: Type[T], args: argparse.Namespace) -> T:
        """The preset args.quick picks, with every field whose flag was given (not None) replaced by it."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
        return replace(cls.preset(args.quick), **given)


@dataclass(frozen=True)
class CompareSettings(Settings):
    """`latentspaces compare`: invert the targets into each space."""

    n_targets: int                  # held-out targets 0 .. n_targets - 1
    steps: int                      # optimizer steps per inversion (0: the start, mean or encoder)
    lr: float                       # Adam learning rate, > 0
    lambda_per: float               # weight of the perceptual distance in the loss, >= 0
    pn_samples: int                 # W samples the P_N statistics are fitted on
    lambda_reg: float = 0.0         # weight of mean((f - f0)^2) towards the encoder's start (--init encoder)
    chunk: int = 8                  # images inverted together; results are saved per chunk
    seed: int = 0
    spaces: Tuple[str, ...] = tuple(SPACE_ORDER)


CompareSettings.QUICK = CompareSettings(n_targets=8, steps=100, lr=0.05, lambda_per=0.0, pn_samples=100_000)
CompareSettings.FULL = CompareSettings(n_targets=64, steps=1200, lr=0.01, lambda_per=1.0, pn_samples=1_000_000)


@dataclass(frozen=True)
class IdentityCurvesSettings(Settings):
    """`latentspaces identity-curves`: the inversions of `compare` (same fields, same files), then edits."""

    n_targets: int
    steps: int
    lr: float
    lambda_per: float
    pn_samples: int
    directions: int                 # GANSpace directions per kind
    direction_samples: int          # W samples for the GANSpace PCA
    chunk: int = 8
    seed: int = 0
    spaces: Tuple[str, ...] = tuple(CURVE_SPACES)
    index: Optional[int] = None     # target of the random-direction figure (None: the set's median face)


IdentityCurvesSettings.QUICK = IdentityCurvesSettings(n_targets=8, steps=100, lr=0.05, lambda_per=0.0,
                                                      pn_samples=100_000, directions=3, direction_samples=50_000)
IdentityCurvesSettings.FULL = IdentityCurvesSettings(n_targets=64, steps=1200, lr=0.01, lambda_per=1.0,
                                                     pn_samples=1_000_000, directions=5, direction_samples=300_000)


@dataclass(frozen=True)
class CompensationSettings(Settings):
    """`latentspaces compensation`: base W+ encoder vs SDIC vs PTI vs HybridInverter F/Z+."""

    n_targets: int
    steps: int                      # F/Z+ HybridInverter steps
    lr: float                       # F/Z+ learning rate
    lambda_per: float               # F/Z+ perceptual weight (PTI's is 1 whenever a perceptual distance is on)
    pivot_steps: int                # PTI pivot (W projection) steps
    tune_steps: int                 # PTI generator tuning steps
    directions: int                 # GANSpace directions per kind for the edit identity
    direction_samples: int
    seed: int = 0


CompensationSettings.QUICK = CompensationSettings(n_targets=8, steps=100, lr=0.05, lambda_per=0.0, pivot_steps=100,
                                                  tune_steps=100, directions=3, direction_samples=50_000)
CompensationSettings.FULL = CompensationSettings(n_targets=64, steps=1200, lr=0.01, lambda_per=1.0, pivot_steps=450,
                                                 tune_steps=350, directions=5, direction_samples=300_000)


@dataclass(frozen=True)
class ScoreIdentitySettings(Settings):
    """`latentspaces score-identity`: the P_N statistics the folder was inverted with."""

    pn_samples: int


ScoreIdentitySettings.QUICK = ScoreIdentitySettings(pn_samples=CompareSettings.QUICK.pn_samples)
ScoreIdentitySettings.FULL = ScoreIdentitySettings(pn_samples=CompareSettings.FULL.pn_samples)


@dataclass(frozen=True)
class PairedSettings(Settings):
    """`latentspaces paired`: one space against others on the rows already in OUT."""

    a: str = "FZPlus"
    b: Optional[Tuple[str, ...]] = None   # None: every other space with rows in OUT
    alpha: float = 2.0                    # |alpha| of the edits compared
    n_targets: Optional[int] = None       # None: all targets


PairedSettings.QUICK = PairedSettings.FULL = PairedSettings()


@dataclass(frozen=True)
class InvertSettings(Settings):
    """`latentspaces invert`: images into one space."""

    space: str = "FZPlus"
    n_targets: int = 8
    steps: int = 200
    lr: float = 0.05
    lambda_per: float = 0.0
    pn_samples: int = 100_000       # (no seed: invert starts from the mean code, and nothing else is random)


InvertSettings.QUICK = InvertSettings.FULL = InvertSettings()


@dataclass(frozen=True)
class AlignSettings(Settings):
    """`latentspaces align`: every face of the photos, aligned as FFHQ was made (`latentspaces.align.FaceAligner`)."""

    size: int = 1024                      # side of the aligned images, px (FFHQ's 1024)
    supersample: int = 4                  # the square is resampled at size * supersample px first (FFHQ: 4x)
    detector: str = "hog"                 # 'hog' or 'cnn' (dlib's detectors)
    upsample: int = 1                     # times the detector doubles the photo (each finds faces half as large)
    min_score: float = 0.2                # detections scoring below are dropped
    refine: bool = True                   # a second landmark pass on the aligned face


AlignSettings.QUICK = AlignSettings.FULL = AlignSettings()


@dataclass(frozen=True)
class EditSettings(Settings):
    """`latentspaces edit`: codes along one direction."""

    space: str = "FZPlus"                 # the codes' space when their file does not say
    index: int = 0                        # which direction of the file
    kind: Optional[str] = None            # kind of a foreign direction file: 'z' or 'w'
    alphas: Tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    pn_samples: int = 100_000
    mask: str = "face"                    # --paste-back blend: 'face' (landmark hull + forehead) or 'square'


EditSettings.QUICK = EditSettings.FULL = EditSettings()


@dataclass(frozen=True)
class DirectionsSettings(Settings):
    """`latentspaces directions`: find directions and save them."""

    method: str = "ganspace"              # 'ganspace', 'sefa' or 'random'
    kind: str = "w"                       # 'z' or 'w' (SeFa directions are always 'w')
    count: int = 10
    samples: int = 100_000                # W samples for the GANSpace PCA
    seed: int = 0


DirectionsSettings.QUICK = DirectionsSettings.FULL = DirectionsSettings()


__all__ = ["AlignSettings", "CompareSettings", "CompensationSettings", "DirectionsSettings", "EditSettings",
           "IdentityCurvesSettings", "InvertSettings", "PairedSettings", "ScoreIdentitySettings", "Settings"]
