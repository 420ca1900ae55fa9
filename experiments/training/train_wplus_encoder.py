"""Train an e4e-style W+ encoder for a generator (default: the embedded 64 px model).

    latentspaces train wplus-encoder --out runs/wplus_encoder
    latentspaces train wplus-encoder --out runs/wplus_encoder --resume     # continue a killed run
    torchrun --nproc_per_node=4 -m experiments.cli train wplus-encoder --out runs/wplus_encoder   # data parallel

The recipe of "Designing an Encoder for StyleGAN Image Manipulation" (Tov et al. 2021), scaled to the
default domain:
- images: `--data` images (the default domain's DCGAN faces, the generator's own samples at any
  resolution, or a folder of photos) and, for `--synthetic-ratio` of each batch (default 0.5), generated
  images G(w^s) whose codes are known;
- loss: L2(G(E(x)), x) + lambda_per P(G(E(x)), x) + lambda_latent mean((E(x^s) - w^s)^2) on the
  generated part (a latent supervision e4e does not have: it shortens CPU training) +
  delta_reg * sum_i mean ||w_i - w_0||_2 + lambda_wd * softplus(-D_lat(E(x))) (optional);
- progressive training: only w0 until `--progressive-start`, then one more offset every
  `--progressive-every` steps (e4e: 20k and 2k);
- latent discriminator (`--lambda-wd` > 0): a 4-layer MLP on single w rows, real ones from the
  mapping network, non-saturating loss, R1 (gamma 10) every 16 steps.
Every `--snap` steps (experiments/training/loop.py): an atomic checkpoint, a log.csv row with the
held-out MSE, SSIM and calibrated identity of G(E(x)) on the held-out images, the loss plot and a
reconstruction grid.
At the end: encoder.safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch
from torch import nn

import latentspaces as ls
from encoders import WPlusEncoder
from encoders.wplus_encoder import BACKBONES, EqualLinear
from experiments.argtypes import non_negative_float, non_negative_int, positive_int
from experiments.config import option
from experiments.distributed import World
from experiments.training.common import probability, snap_option, training_codes
from experiments.training.heads import HeadConfig, HeadTrainer, lr_option, steps_option, train_head
from experiments.training.images import HeldoutScores, synthetic_ratio_option
from latentspaces.images import save_images
from latentspaces.losses import (
    R1_INTERVAL,
    ReconstructionLoss,
    discriminator_loss,
    generator_loss,
    lazy_r1_term,
    mean_squared_error,
    r1_penalty,
)
from latentspaces.metrics.perceptual import make_perceptual


class LatentDiscriminator(nn.Module):
    """e4e's latent discriminator: w [N, w_dim] -> logit [N] through `layers` EqualLinear + LeakyReLU 0.2."""

    def __init__(self, w_dim: int = 512, layers: int = 4):
        super().__init__()
        mods = []
        for _ in range(layers):
            mods += [EqualLinear(w_dim, w_dim), nn.LeakyReLU(0.2)]
        mods.append(EqualLinear(w_dim, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w).squeeze(-1)


@dataclass(frozen=True)
class WPlusEncoderConfig(HeadConfig):
    """`latentspaces train wplus-encoder`: the e4e-style W+ encoder."""

    snap: int = snap_option(250)
    steps: int = steps_option(3000)
    lr: float = lr_option(5e-4)
    backbone: Optional[str] = option(None, "the encoder's backbone", choices=sorted(BACKBONES),
                                     default_text="'small' up to 128 px, else 'ir_se50'")
    style_channels: int = option(64, "hidden channels of the style blocks", type=positive_int)
    lambda_per: float = option(0.8, "perceptual weight (e4e: 0.8 LPIPS)", type=non_negative_float)
    lambda_latent: float = option(1.0, "latent supervision on generated images", type=non_negative_float)
    synthetic_ratio: Optional[float] = synthetic_ratio_option("0.5")
    delta_reg: float = option(2e-4, "weight of the offsets' L2 norms (e4e: 2e-4)", type=non_negative_float)
    progressive_start: int = option(300, "steps of w0-only training", type=non_negative_int)
    progressive_every: int = option(100, "steps between newly enabled offsets", type=positive_int)
    lambda_wd: float = option(0.0, "latent discriminator weight (e4e: 0.1; 0: off)", type=non_negative_float)
    r1: float = option(10.0, "R1 weight of the latent discriminator", type=non_negative_float)
    mixing: float = option(0.5, "style mixing of the generated training codes", type=probability)


CONFIG = WPlusEncoderConfig


def progressive_stage(step: int, start: int, every: int, num_ws: int) -> int:
    """Number of active offsets at `step`: 0 before `start`, then one more every `every` steps."""
    if step < start:
        return 0
    return min(num_ws - 1, 1 + (step - start) // max(every, 1))


class WPlusEncoderTrainer(HeadTrainer):
    """e4e's losses (and optional latent discriminator) over a frozen generator."""

    name = "train W+ encoder"
    columns = ("step", "seconds", "loss", "mse", "perceptual", "latent", "delta", "wd", *HeldoutScores.COLUMNS,
               "stage")
    synthetic_ratio = 0.5
    fresh_ok = ("D_lat", "opt_d")  # a run may switch the latent discriminator on when resumed

    def __init__(self, args: WPlusEncoderConfig, out: Path, G: ls.Generator, world: World, device: torch.device):
        super().__init__(args, out, G, world, device)
        self.backbone = args.backbone or ("small" if G.resolution <= 128 else "ir_se50")
        self.encoder = self.network = WPlusEncoder.for_generator(G, backbone=self.backbone,
                                                  style_channels=args.style_channels).to(device).train()
        self.perceptual = make_perceptual(args.perceptual, G.resolution, device)
        self.reconstruction = ReconstructionLoss(self.perceptual, lambda_per=args.lambda_per)
        self.D_lat = LatentDiscriminator(G.w_dim).to(device) if args.lambda_wd > 0 else None
        world.broadcast_(self.encoder, *([self.D_lat] if self.D_lat is not None else []))
        self.n_syn = self.images.n_synthetic
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=args.lr)
        self.opt_d = torch.optim.Adam(self.D_lat.parameters(), lr=2e-5) if self.D_lat is not None else None
        self.gen, self.data_gen = self.seeded(1, on_device=False), self.seeded(2)

    def checkpointed(self) -> Dict[str, object]:
        if self.D_lat is None:
            return {"encoder": self.encoder, "opt": self.opt}
        return {"encoder": self.encoder, "opt": self.opt, "D_lat": self.D_lat, "opt_d": self.opt_d}

    def generators(self) -> Dict[str, torch.Generator]:
        return {"gen": self.gen, "data_gen": self.data_gen}

    def stage(self, step: int) -> int:
        return progressive_stage(step, self.args.progressive_start, self.args.progressive_every, self.G.num_ws)

    def batch_images(self):
        """This rank's images x [B, 3, R, R]: generated ones first (with their codes ws^s), then --data's."""
        parts, ws_syn = [], None
        if self.n_syn > 0:
            ws_syn = training_codes(self.G, self.n_syn, self.args.mixing, self.gen)
            parts.append(self.G.synthesis(ws_syn, noise_mode="const"))
        if self.batch - self.n_syn > 0:
            parts.append(self.images.draw_source(self.batch - self.n_syn, self.data_gen))
        return torch.cat(parts), ws_syn

    def step(self, step: int) -> Dict[str, torch.Tensor]:
        G, args, zero = self.G, self.args, torch.zeros((), device=self.device)
        stage = self.encoder.progressive_stage = self.stage(step)
        with torch.no_grad():
            x, ws_syn = self.batch_images()
        ws = self.encoder(x)
        y = G.synthesis(ws, noise_mode="const")
        recon = self.reconstruction.batch(y, x)
        mse, per = recon["pixel"], recon["perceptual"]
        lat = mean_squared_error(ws[:self.n_syn], ws_syn) if ws_syn is not None else zero
        delta = WPlusEncoder.deltas(ws)[:, :stage].norm(dim=2).mean(dim=0).sum() if stage > 0 else zero
        loss = recon["loss"] + args.lambda_latent * lat + args.delta_reg * delta
        wd = zero
        if self.D_lat is not None:
            self.D_lat.requires_grad_(False)
            wd = generator_loss(self.D_lat(ws.reshape(-1, G.w_dim)))
            loss = loss + args.lambda_wd * wd
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.world.average_gradients_(self.encoder.parameters())
        self.opt.step()
        if self.D_lat is not None:
            self.discriminator_step(step, ws.detach())
        return {"loss": loss.detach(), "mse": mse.detach(), "perceptual": per.detach(), "latent": lat.detach(),
                "delta": delta.detach(), "wd": wd.detach()}

    def discriminator_step(self, step: int, ws: torch.Tensor) -> None:
        """Non-saturating loss of the latent discriminator, real ws from the mapping network, lazy R1."""
        D_lat, G = self.D_lat, self.G
        D_lat.requires_grad_(True)
        with torch.no_grad():
            real = G.mapping(torch.randn(self.batch * 4, G.z_dim, generator=self.gen).to(self.device))
        loss_d = discriminator_loss(D_lat(ws.reshape(-1, G.w_dim)), D_lat(real))
        if step % R1_INTERVAL == 0:
            loss_d = loss_d + lazy_r1_term(r1_penalty(D_lat, real), self.args.r1)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.world.average_gradients_(D_lat.parameters())
        self.opt_d.step()

    @torch.no_grad()
    def snapshot(self, step: int, values: Mapping[str, float]) -> Dict[str, float]:
        stage = self.encoder.progressive_stage
        if self.heldout is None:
            return {**self.scores(None), "stage": stage}
        self.encoder.eval()
        recon = self.G.synthesis(self.encoder(self.heldout), noise_mode="const")
        self.encoder.train()
        save_images(torch.cat([self.heldout[:8], recon[:8]]), self.out / "reconstructions.png", nrow=8)
        return {**self.scores(recon), "stage": stage}

    def export(self, step: int) -> None:
        self.encoder.progressive_stage = self.stage(max(step - 1, 0))  # offsets past the last trained stage stay off
        super().export(step)

    def export_meta(self, step: int) -> Dict[str, object]:
        return {"backbone": self.backbone,
                "progressive_stage": self.encoder.progressive_stage}


def train(args: WPlusEncoderConfig) -> Path:
    return train_head(WPlusEncoderTrainer, args)
