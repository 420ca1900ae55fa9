"""Train the default 64x64 face StyleGAN2 (or any small StyleGAN2) on the DCGAN face domain.

    latentspaces train stylegan2 --out runs/default_g --kimg 1000 --batch 64 --device cuda
    latentspaces train stylegan2 --out runs/default_g --resume      # continue a killed run

The recipe of "Analyzing and Improving the Image Quality of StyleGAN" (Karras et al. 2020) with the
'auto' hyperparameters of "Training Generative Adversarial Networks with Limited Data": non-saturating
logistic loss, lazy R1 on reals every 16 D steps (gamma = 0.0002 R^2 / batch unless given), Adam lr
0.0025, betas (0, 0.99) with the lazy-regularization correction for D, G EMA with half-life
10 * batch / 32 kimg (ramp-up 0.05), style mixing with probability 0.9. No path-length regularization
and no augmentation: the data are endless fresh DCGAN samples, so D cannot memorise them.

It runs in the shared loop (experiments/training/loop.py), counted in images: every `--snap` kimg an
atomic checkpoint (plain tensors, loadable weights-only), a row in log.csv (losses averaged over the
window; r1 over the steps that computed it), the loss plot and an 8x8 grid of G_ema samples. At the
end (also after `--max-seconds`): w_avg from 100k mapping samples, and `generator.safetensors` /
`discriminator.safetensors` in the project's own format. One process: under torchrun it refuses to start.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from experiments.argtypes import non_negative_float, positive_float, positive_int
from experiments.config import option
from experiments.training.common import RunConfig, open_run, probability, training_codes
from experiments.training.loop import Trainer, TrainingLoop
from latentspaces import Generator, save_generator
from latentspaces.datasets import FaceSampler
from latentspaces.discriminator import Discriminator, save_discriminator
from latentspaces.images import save_images
from latentspaces.losses import (
    R1_INTERVAL,
    default_r1_gamma,
    discriminator_loss,
    generator_loss,
    lazy_r1_term,
    r1_penalty,
)

DEFAULT_G_CHANNELS = {4: 256, 8: 256, 16: 128, 32: 48, 64: 16}
DEFAULT_D_CHANNELS = {64: 32, 32: 64, 16: 128, 8: 256, 4: 256}
GRID_SEED = 123   # z stream of the snapshot grids


def face_resolution(text: str) -> int:
    """argparse type: a side in px that divides 64 (the DCGAN face domain is 64 px)."""
    value = positive_int(text)
    if value > 64 or 64 % value:
        raise argparse.ArgumentTypeError(f"the DCGAN face domain is 64 px: the resolution must divide 64, got {value}")
    return value


@dataclass(frozen=True)
class StyleGAN2Config(RunConfig):
    """`latentspaces train stylegan2`: the default generator (and its discriminator) on the default domain's faces."""

    snap: float = option(50, "kimg between checkpoints / grids", type=positive_float)
    kimg: float = option(1000, "training length in thousands of real images", type=positive_float)
    batch: int = option(64, "images per step", type=positive_int)
    gamma: Optional[float] = option(None, "R1 weight", type=non_negative_float, default_text="0.0002 R^2 / batch")
    lr: float = option(0.0025, "Adam's learning rate", type=positive_float)
    resolution: int = option(64, "side in px, a divisor of 64", type=face_resolution)
    g_channels: dict = option(DEFAULT_G_CHANNELS, "JSON {res: ch} of the generator", type=json.loads)
    d_channels: dict = option(DEFAULT_D_CHANNELS, "JSON {res: ch} of the discriminator", type=json.loads)
    z_dim: int = option(512, "z (and w) dimensionality", type=positive_int)
    mapping_layers: int = option(8, "mapping network layers", type=positive_int)
    mixing: float = option(0.9, "style-mixing probability", type=probability)
    w_avg_samples: int = option(100_000, "mapping samples for the exported w_avg", type=positive_int)


CONFIG = StyleGAN2Config


def build(args: StyleGAN2Config) -> Tuple[Generator, Discriminator, Generator]:
    """(G, D, G_ema) freshly initialised from the flags; G_ema starts as a copy of G."""
    G = Generator(z_dim=args.z_dim, w_dim=args.z_dim, resolution=args.resolution, mapping_layers=args.mapping_layers,
                  channels={int(k): v for k, v in args.g_channels.items()})
    D = Discriminator(args.resolution, {int(k): v for k, v in args.d_channels.items()})
    G_ema = Generator(**G.config)
    G_ema.load_state_dict(G.state_dict())
    return G, D, G_ema.eval().requires_grad_(False)


class StyleGAN2Trainer(Trainer):
    """G and D of StyleGAN2 trained against each other, one G step then one D step per loop step."""

    name = "train StyleGAN2"
    unit = "img"
    columns = ("kimg", "seconds", "loss_G", "loss_D", "r1", "img_per_s")
    plot_columns = ("loss_G", "loss_D")

    def __init__(self, args: StyleGAN2Config, out: Path, device: torch.device):
        self.args = args                  # the parsed flags
        self.out = out                    # run directory
        self.device = device
        self.per_step = args.batch        # the loop counts images
        G, D, G_ema = build(args)
        self.G, self.D, self.G_ema = G.to(device), D.to(device), G_ema.to(device)
        ratio = R1_INTERVAL / (R1_INTERVAL + 1)
        self.opt_G = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.0, 0.99), eps=1e-8)
        self.opt_D = torch.optim.Adam(D.parameters(), lr=args.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
        self.gamma = args.gamma if args.gamma is not None else default_r1_gamma(args.resolution, args.batch)
        self.ema_nimg = 10 * args.batch / 32 * 1000
        self.data_gen = torch.Generator(device=device).manual_seed(args.seed + 1)
        self.train_gen = torch.Generator(device=device).manual_seed(args.seed + 2)
        self.stream = FaceSampler(device).stream(args.batch, 0, generator=self.data_gen)  # draws on first next()
        self.grid_z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(GRID_SEED)).to(device)

    def checkpointed(self) -> Dict[str, object]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema, "opt_G": self.opt_G, "opt_D": self.opt_D}

    def generators(self) -> Dict[str, torch.Generator]:
        return {"data_gen": self.data_gen, "train_gen": self.train_gen}

    def checkpoint_extras(self, step: int) -> Dict[str, torch.Tensor]:
        return {"nimg": torch.tensor(step * self.per_step)}

    def fakes(self) -> torch.Tensor:
        """A batch of G's images of style-mixed codes, with random noise (both from the training stream)."""
        ws = training_codes(self.G, self.args.batch, self.args.mixing, self.train_gen)
        return self.G.synthesis(ws, noise_mode="random", fused_modconv=False, noise_generator=self.train_gen)

    def step(self, step: int) -> Dict[str, torch.Tensor]:
        G, D = self.G, self.D
        real = next(self.stream)
        if real.shape[-1] != self.args.resolution:  # smaller test models: box-downsample the 64 px faces
            real = F.adaptive_avg_pool2d(real, self.args.resolution)
        # G step: non-saturating loss.
        G.requires_grad_(True)
        D.requires_grad_(False)
        loss_G = generator_loss(D(self.fakes()))
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        # D step: logistic loss, plus lazy R1 on reals.
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad():
            fake = self.fakes()
        loss_D = discriminator_loss(D(fake), D(real))
        losses = {"loss_G": loss_G.detach()}
        if step % R1_INTERVAL == 0:
            r1 = r1_penalty(D, real)
            loss_D = loss_D + lazy_r1_term(r1, self.gamma, R1_INTERVAL)
            losses["r1"] = r1.detach()
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()
        losses["loss_D"] = loss_D.detach()
        self.update_ema((step + 1) * self.per_step)
        return losses

    @torch.no_grad()
    def update_ema(self, nimg: int) -> None:
        """G_ema <- G + beta (G_ema - G), beta from the EMA half-life (ramped up over the first images)."""
        beta = 0.5 ** (self.args.batch / max(min(self.ema_nimg, nimg * 0.05), 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    @torch.no_grad()
    def snapshot(self, step: int, values: Mapping[str, float]) -> Dict[str, float]:
        nimg = step * self.per_step
        save_images(self.G_ema(self.grid_z, noise_mode="const"), self.out / f"samples_{nimg:09d}img.png", nrow=8)
        extra = {"kimg": nimg / 1000, "img_per_s": values["steps_per_s"] * self.per_step}
        if "r1" not in values:  # no R1 step in this window
            extra["r1"] = math.nan
        return extra

    def export(self, step: int) -> None:
        export(self.G_ema, self.D, self.out, self.args.seed, self.args.w_avg_samples)


@torch.no_grad()
def export(G_ema: Generator, D: Discriminator, out: Path, seed: int = 0, w_avg_samples: int = 100_000) -> None:
    """w_avg from mapping samples, then G_ema and D in the project's safetensors formats."""
    gen = torch.Generator(device="cpu").manual_seed(seed + 3)
    total = torch.zeros(G_ema.w_dim, dtype=torch.float64, device=G_ema.w_avg.device)
    for start in range(0, w_avg_samples, 10_000):
        z = torch.randn(min(10_000, w_avg_samples - start), G_ema.z_dim, generator=gen).to(G_ema.w_avg.device)
        total += G_ema.mapping(z).double().sum(0)
    G_ema.mapping.w_avg.copy_((total / w_avg_samples).float())
    save_generator(G_ema, out / "generator.safetensors")
    save_discriminator(D, out / "discriminator.safetensors")
    print(f"exported {out / 'generator.safetensors'} and {out / 'discriminator.safetensors'}")


def train(args: StyleGAN2Config) -> Path:
    out, device, world = open_run(args)
    if world.size > 1:
        raise SystemExit("the StyleGAN2 trainer runs in one process; start it without torchrun")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    trainer = StyleGAN2Trainer(args, out, device)
    TrainingLoop(trainer, out, world, total=round(args.kimg * 1000), snap=round(args.snap * 1000), resume=args.resume,
                 max_seconds=args.max_seconds, config=asdict(args), device=device).run()
    return out
