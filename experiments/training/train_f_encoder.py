"""Train an F encoder (BDInvert's base-code encoder) on generated pairs ("Revisiting Latent Space of GAN
Inversion", Eq. 2), and on photos when --data is a folder.

    latentspaces train f-encoder --out runs/f_encoder                 # default generator
    latentspaces train f-encoder --out runs/f_encoder --resume        # continue a killed run
    torchrun --nproc_per_node=4 -m experiments.cli train f-encoder --out runs/f_encoder   # --batch split over 4

Each step draws z (with style mixing), w^s = mapping(z), the base code f^s = G's own output of the F
layer and x = G(f^s, w^s_{M+}) (the F-space image: the coarse RGB skip is dropped). The loss is

    ||G(E(x), w^s_{M+}) - x||^2 + lambda_enc * P(G(E(x), w^s_{M+}), x)

With --data a folder, 1 - --synthetic-ratio of each batch (the ratio is 1 for 'default' and 'generator':
Eq. 2 alone; 0.5 for a folder) are photos x, whose detail codes nobody knows: they enter the same loss
with the mean detail codes, G(E(x), w_avg), which is how the encoder's f0 starts an inversion
(`FEncoder.init_code`), so the photos teach it the base codes of images the generator cannot render.

with P the perceptual distance (LPIPS when its backbone is installed, else the default model's
D-features distance; `--perceptual none` for pixels only). BDInvert: batch 16, Adam 1e-3, 10k steps,
x0.1 every 2k. Every `--snap` steps (experiments/training/loop.py): an atomic checkpoint, a row in
log.csv with the held-out initialisation's MSE, SSIM and calibrated identity (E(x) with mean detail
codes, on the held-out images), the loss plot and a reconstruction grid. At the end: `encoder.safetensors` in the project's format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch

import latentspaces as ls
from encoders import FEncoder
from experiments.argtypes import non_negative_float, positive_int
from experiments.config import option
from experiments.distributed import World
from experiments.training.common import probability, snap_option, training_codes
from experiments.training.heads import HeadConfig, HeadTrainer, batch_option, steps_option, train_head
from experiments.training.images import HeldoutScores, is_folder_source, synthetic_ratio_option
from latentspaces import assets
from latentspaces.images import save_images
from latentspaces.losses import ReconstructionLoss
from latentspaces.metrics.perceptual import make_perceptual
from latentspaces.spaces.f import default_f_layer


@dataclass(frozen=True)
class FEncoderConfig(HeadConfig):
    """`latentspaces train f-encoder`: BDInvert's F-space encoder on generated pairs (Eq. 2)."""

    snap: int = snap_option(250)
    steps: int = steps_option(10_000)
    batch: int = batch_option(16)
    layer: Optional[str] = option(None, "F layer", default_text="the F spaces' default for G")
    widths: Optional[list] = option(None, "JSON list of the three block widths", type=json.loads,
                                    default_text="[128, 256, 512]; [32, 64, 128] for 'default'")
    decay_every: int = option(2000, "steps between x0.1 learning-rate decays", type=positive_int)
    lambda_enc: float = option(1.0, "weight of the perceptual term", type=non_negative_float)
    mixing: float = option(0.5, "style-mixing probability of the training codes", type=probability)
    synthetic_ratio: Optional[float] = synthetic_ratio_option("1 for default/generator (Eq. 2's generated pairs), 0.5 "
                                                              "for a folder")


CONFIG = FEncoderConfig


class FEncoderTrainer(HeadTrainer):
    """BDInvert's encoder loss on generated pairs, over a frozen generator."""

    name = "train F encoder"
    columns = ("step", "seconds", "loss", "mse", "perceptual", *HeldoutScores.COLUMNS, "lr")

    def __init__(self, args: FEncoderConfig, out: Path, G: ls.Generator, world: World, device: torch.device):
        super().__init__(args, out, G, world, device)
        self.layer = args.layer or default_f_layer(G)
        widths = args.widths or ([32, 64, 128] if args.generator == assets.DEFAULT_GENERATOR else [128, 256, 512])
        self.encoder = self.trained(FEncoder.for_generator(G, self.layer, widths))
        self.space = ls.FWPlus(G, layer=self.layer)
        self.perceptual = make_perceptual(args.perceptual, G.resolution, device)
        self.reconstruction = ReconstructionLoss(self.perceptual, lambda_per=args.lambda_enc)
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=args.lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=args.decay_every, gamma=0.1)
        self.gen = self.seeded(1, on_device=False)

    def default_synthetic_ratio(self, data: str) -> float:
        return 0.5 if is_folder_source(data) else 1.0

    def checkpointed(self) -> Dict[str, object]:
        return {"encoder": self.encoder, "opt": self.opt, "sched": self.sched}

    def generators(self) -> Dict[str, torch.Generator]:
        return {"gen": self.gen}

    def step(self, step: int) -> Dict[str, torch.Tensor]:
        G, layer = self.G, self.layer
        with torch.no_grad():   # generated pairs with their own detail codes, then photos with the mean ones
            n_syn, parts = self.images.n_synthetic, []
            ws = training_codes(G, n_syn, self.args.mixing, self.gen) if n_syn else None
            if n_syn:
                parts.append(G.synthesis.from_feature(self.space.feature_of(ws), ws, layer, noise_mode="const"))
            if self.images.n_source:
                parts.append(self.images.draw_source(self.images.n_source, self.gen))
                mean = self.space.to_ws(self.space.mean(self.images.n_source))
                ws = mean if ws is None else torch.cat([ws, mean])
            x = torch.cat(parts)
        y = G.synthesis.from_feature(self.encoder(x), ws, layer, noise_mode="const")
        recon = self.reconstruction.batch(y, x)
        loss, mse, per = recon["loss"], recon["pixel"], recon["perceptual"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.world.average_gradients_(self.encoder.parameters())
        self.opt.step()
        self.sched.step()
        return {"loss": loss.detach(), "mse": mse.detach(), "perceptual": per.detach()}

    @torch.no_grad()
    def snapshot(self, step: int, values: Mapping[str, float]) -> Dict[str, float]:
        lr = self.sched.get_last_lr()[0]
        if self.heldout is None:
            return {**self.scores(None), "lr": lr}
        self.encoder.eval()
        recon = self.space.synthesize(self.encoder.init_code(self.space, self.heldout))
        self.encoder.train()
        save_images(torch.cat([self.heldout[:8], recon[:8]]), self.out / "reconstructions.png", nrow=8)
        return {**self.scores(recon), "lr": lr}

    def export_meta(self, step: int) -> Dict[str, object]:
        return {"layer": self.layer, "lambda_enc": self.args.lambda_enc}


def train(args: FEncoderConfig) -> Path:
    return train_head(FEncoderTrainer, args)
