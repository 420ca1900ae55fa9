"""Train an HFGI compensation head (ADA + consultation encoder) over a frozen W+ encoder ("High-Fidelity
GAN Inversion for Image Attribute Editing", the authors' released trainer adapted to what exists offline).

    latentspaces train hfgi --out runs/hfgi                    # default generator + 'default-wplus'
    latentspaces train hfgi --out runs/hfgi --resume           # continue a killed run
    torchrun --nproc_per_node=4 -m experiments.cli train hfgi --out runs/hfgi   # data parallel

Each step: images x (`--data`: the default domain's faces, the generator's own samples at any
resolution, or a folder of photos), W = E(x) from the frozen base encoder, x0 = G(W), D = x - clamp(x0). Two forms:

`--consult warped`, the authors' released forward:
    A = ADA(cat[warp(D), clamp(x0)])      ADA aligns a misaligned distortion to the unwarped G(W)
    y = G(W) fused with Ec(A)             the consultation encoder reads ADA's output
    l2 * ||y - x||^2 + per * P(y, x) + align * ||A - D||_1   [+ adv * softplus(-Disc(y))]
so the reconstruction losses train ADA too, not only the alignment loss.
`--consult unwarped`, the default (our form): y is fused from ADA(cat[D, clamp(x0)]), the unwarped D, as
at inference, and ADA(cat[warp(D), clamp(x0)]) enters only the alignment loss. The default is not the
released form because the numbers say so: trained side by side for 2,000 steps on the default model
(batch 8, D-features, the same seed), the released form's held-out MSE was 0.0102 (mean of the snapshots
of steps 1100-2000) against 0.0044, and in `latentspaces compensation --quick` MSE 0.0106 vs 0.0046, SSIM
0.774 vs 0.860, identity 0.952 vs 0.978 at equal edit identity (0.915 vs 0.913). The released schedule
(100k steps on FFHQ) may close the gap; at CPU budgets it does not.
warp: a random perspective (distortion 0.15, probability 0.9) drawn per sample; the released code draws
one warp per batch (torchvision's RandomPerspective on the batch). P: LPIPS when its backbone is
installed, else the default model's D-features distance. The identity loss is off (no differentiable
face network offline; dlib's descriptor is not differentiable). The adversarial term is unused by the
released trainer; `--lambda-adv` turns it on with a discriminator trained beside the head
(non-saturating loss, lazy R1), started from the default model's at 64 px and fresh at other
resolutions. The paper trains with Ranger (RAdam + Lookahead) at 1e-4, batch 8, about 100k steps on
FFHQ; here Adam at 1e-3 (our choice: a short CPU run), batch 8, a few thousand steps on the 64 px default.
Every `--snap` steps: checkpoint, log.csv row (held-out MSE of the base; MSE, SSIM and identity of HFGI), loss plot,
reconstruction grid. At the end: hfgi.safetensors in the project's encoder format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch

import latentspaces as ls
from encoders import HFGI
from encoders.hfgi import RENDERED_RESIZES
from experiments.argtypes import non_negative_float, positive_float, positive_int
from experiments.config import option
from experiments.distributed import World
from experiments.training.adversarial import discriminator_step
from experiments.training.common import probability
from experiments.training.heads import HeadTrainer, OverBaseConfig, train_head
from experiments.training.images import HeldoutScores
from experiments.training.warps import random_perspective
from latentspaces.images import save_images
from latentspaces.losses import (
    ReconstructionLoss,
    default_r1_gamma,
    generator_loss,
    mean_absolute_error,
    mean_squared_error,
)
from latentspaces.metrics.perceptual import make_perceptual

CONSULT_FORMS = ("warped", "unwarped")


@dataclass(frozen=True)
class HFGIConfig(OverBaseConfig):
    """`latentspaces train hfgi`: an HFGI head (ADA + consultation encoder) over a frozen W+ encoder."""

    layer: Optional[str] = option(None, "modulated layer", default_text="encoders.hfgi.default_hfgi_layer")
    width: float = option(0.5, "channel multiplier (1.0: the released sizes)", type=positive_float)
    input_size: Optional[int] = option(None, "side of the distortion map", type=positive_int,
                                       default_text="min(resolution, 256); the paper: 256")
    lambda_mse: float = option(1.0, "weight of the pixel MSE", type=non_negative_float)
    lambda_per: float = option(0.8, "weight of the perceptual distance", type=non_negative_float)
    lambda_align: float = option(0.1, "weight of ADA's alignment loss", type=non_negative_float)
    lambda_adv: float = option(0.0, "non-saturating adversarial loss with a trained discriminator (0: off, as "
                                    "released)", type=non_negative_float)
    warp_distortion: float = option(0.15, "perspective warp strength", type=probability)
    warp_p: float = option(0.9, "probability that a sample is warped", type=probability)
    consult: str = option("unwarped", "what the fused image is made from in training: ADA of the unwarped distortion "
                                      "('unwarped', our form: it measured better) or of the warped one ('warped', the "
                                      "released code)", choices=CONSULT_FORMS)
    rendered_resize: str = option("bilinear", "how G(W) shrinks to the distortion map's side: plain 'bilinear' (the "
                                              "released code) or 'antialias'", choices=RENDERED_RESIZES)


CONFIG = HFGIConfig


class HFGITrainer(HeadTrainer):
    """HFGI's released loss on DCGAN faces, over a frozen generator and a frozen W+ encoder."""

    name = "train HFGI"
    columns = ("step", "seconds", "loss", "l2", "perceptual", "align", "adv", "loss_D", "heldout_mse_base",
               *HeldoutScores.COLUMNS)
    export_file = "hfgi.safetensors"
    over_base_encoder = True

    def __init__(self, args: HFGIConfig, out: Path, G: ls.Generator, world: World, device: torch.device):
        super().__init__(args, out, G, world, device)
        self.hfgi = self.trained(HFGI.for_generator(G, args.layer, args.input_size, args.width,
                                                    rendered_resize=args.rendered_resize))
        self.perceptual = make_perceptual(args.perceptual, G.resolution, device)
        self.reconstruction = ReconstructionLoss(self.perceptual, args.lambda_mse, args.lambda_per)
        self.opt = torch.optim.Adam(self.hfgi.parameters(), lr=args.lr)
        self.disc = self.opt_D = self.D_start = None
        if args.lambda_adv > 0:
            self.disc = self.adversary()
            self.opt_D = torch.optim.Adam(self.disc.parameters(), lr=args.lr, betas=(0.0, 0.99))
        self.data_gen, self.warp_gen = self.seeded(7), self.seeded(11, on_device=False)

    def checkpointed(self) -> Dict[str, object]:
        nets = {"hfgi": self.hfgi, "opt": self.opt}
        if self.disc is not None:
            nets.update(disc=self.disc, opt_D=self.opt_D)
        return nets

    def generators(self) -> Dict[str, torch.Generator]:
        return {"data_gen": self.data_gen, "warp_gen": self.warp_gen}

    def step(self, step: int) -> Dict[str, torch.Tensor]:
        args, hfgi = self.args, self.hfgi
        with torch.no_grad():
            x = self.images.draw(self.batch, self.data_gen)
            ws = self.base(x)
            x0 = self.G.synthesis(ws, noise_mode="const")
        dmap = hfgi.distortion(x, x0)
        rendered = hfgi.resize(x0.clamp(-1, 1))
        warped = random_perspective(dmap.cpu(), args.warp_distortion, args.warp_p, self.warp_gen).to(dmap.device)
        aligned = hfgi.ada(torch.cat([warped, rendered], dim=1))
        if args.consult == "warped":      # released: the image is fused from ADA of the warped distortion
            y = hfgi.render(self.G, ws, *hfgi.consultation(aligned))
        else:                             # our first form: from ADA of the unwarped one
            y = hfgi.render(self.G, ws, *hfgi.modulation(dmap, x0))
        zero = torch.zeros((), device=x.device)
        recon = self.reconstruction.batch(y, x)
        l2, per = recon["pixel"], recon["perceptual"]
        align = mean_absolute_error(aligned, dmap)
        if self.disc is not None:
            self.disc.requires_grad_(False)
        adv = generator_loss(self.disc(y)) if self.disc is not None else zero
        total = recon["loss"] + args.lambda_align * align + args.lambda_adv * adv
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.world.average_gradients_(hfgi.parameters())
        self.opt.step()
        terms = {"loss": total, "l2": l2, "perceptual": per, "align": align, "adv": adv}
        if self.disc is not None:
            terms["loss_D"] = discriminator_step(self.disc, self.opt_D, y, x, step,
                                                 default_r1_gamma(x.shape[-1], args.batch), self.world.average_gradients_)
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def snapshot(self, step: int, values: Mapping[str, float]) -> Dict[str, float]:
        """Held-out MSE of the base reconstruction, MSE, SSIM and identity of HFGI's; the grid targets / base / HFGI."""
        extra = {column: float("nan") for column in ("adv", "loss_D") if column not in values}
        if self.heldout is None:
            return {**extra, "heldout_mse_base": float("nan"), **self.scores(None)}
        self.hfgi.eval()
        ws = self.base(self.heldout)
        x0 = self.G.synthesis(ws, noise_mode="const")
        y = self.hfgi.compensate(self.G, self.heldout, ws, x0).image
        self.hfgi.train()
        save_images(torch.cat([self.heldout[:8], x0[:8], y[:8]]), self.out / "reconstructions.png", nrow=8)
        return {**extra, "heldout_mse_base": mean_squared_error(x0, self.heldout).item(), **self.scores(y)}

    def export_meta(self, step: int) -> Dict[str, object]:
        return {"base_encoder": str(self.args.base_encoder), "lambda_adv": self.args.lambda_adv,
                "consult": self.args.consult, "discriminator_start": self.D_start,
                "identity_loss": "off (no differentiable identity network offline)"}


def train(args: HFGIConfig) -> Path:
    return train_head(HFGITrainer, args)
