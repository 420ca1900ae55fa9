"""Where the trainers of networks over a frozen generator get their images, and the discriminator they start
from: one choice (`--data`) shared by the heads' trainers.

- 'default': the default domain's faces (the DCGAN sampler, 64 px), with the shipped held-out faces for
  the snapshots. Only for 64 px generators.
- 'generator': the frozen generator's own samples G(w), w = mapping(z) with z ~ N(0, I) (no truncation),
  with 16 samples of a fixed seed as the held-out set. For any generator: what a head can be trained on
  when no photos are at hand. It learns to compensate the base encoder's errors on images the generator
  can render; on photos the errors also hold what the generator cannot render, so a head meant for
  photos needs photos (the papers train on FFHQ).

`draw(n, generator)` takes the trainer's seeded generator, so a resumed run continues its random stream.
"""

from __future__ import annotations

import argparse

import torch

import latentspaces as ls
from experiments.argtypes import positive_int
from experiments.training.common import training_codes
from latentspaces.assets import heldout_targets
from latentspaces.datasets import FaceSampler
from latentspaces.discriminator import Discriminator, load_default_discriminator

DATA_SOURCES = ("default", "generator")
DEFAULT_DOMAIN_RESOLUTION = 64
HELDOUT_SEED = 2**31 - 1   # the generator source's held-out samples: a seed no training stream starts from


class TrainingImages:
    """Training and held-out images [N, 3, R, R] in ~[-1, 1] at the generator's resolution R."""

    def __init__(
        self,
        source: str,               # 'default' (DCGAN faces, 64 px) or 'generator' (G's own samples)
        G: ls.Generator,           # the frozen generator the network is trained over
        device: torch.device,      # where the images are made
    ):
        if source not in DATA_SOURCES:
            raise SystemExit(f"--data {source!r}: expected one of {DATA_SOURCES}")
        if source == "default" and G.resolution != DEFAULT_DOMAIN_RESOLUTION:
            raise SystemExit(f"--data default draws the default domain's {DEFAULT_DOMAIN_RESOLUTION} px faces and this "
                             f"generator makes {G.resolution} px images; pass --data generator (its own samples)")
        self.source, self.G, self.device = source, G, device
        self.faces = FaceSampler(device) if source == "default" else None

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n training images drawn with `generator` (on this device)."""
        if self.faces is not None:
            return self.faces.from_z(torch.randn(n, 100, generator=generator, device=self.device))
        return self.G.synthesis(training_codes(self.G, n, 0.0, generator), noise_mode="const")

    @torch.no_grad()
    def heldout(self, n: int = 16) -> torch.Tensor:
        """n held-out images: the shipped held-out faces, or samples of the fixed seed HELDOUT_SEED."""
        if self.faces is not None:
            return heldout_targets(n).to(self.device)
        return self.G.synthesis(training_codes(self.G, n, 0.0, torch.Generator().manual_seed(HELDOUT_SEED)),
                                noise_mode="const")


def add_data_flag(ap: argparse.ArgumentParser, what: str = "the training images") -> None:
    """--data default|generator (see the module docstring) and --heldout-images N."""
    ap.add_argument("--data", choices=DATA_SOURCES, default="default",
                    help=f"{what}: the default domain's 64 px faces ('default') or the generator's own samples "
                         "('generator', any resolution)")
    ap.add_argument("--heldout-images", type=positive_int, default=16,
                    help="held-out images scored at every snapshot (the first 8 drawn in the grid)")


def starting_discriminator(G: ls.Generator) -> tuple:
    """(discriminator, what it is): the default model's trained one for a 64 px generator, else a fresh
    StyleGAN2 discriminator at G's resolution (channels min(16384 / r, 512))."""
    if G.resolution == DEFAULT_DOMAIN_RESOLUTION and G.img_channels == 3:
        return load_default_discriminator(), "the default model's"
    return Discriminator(G.resolution, img_channels=G.img_channels), f"fresh at {G.resolution} px"


__all__ = ["DATA_SOURCES", "HELDOUT_SEED", "TrainingImages", "add_data_flag", "starting_discriminator"]
