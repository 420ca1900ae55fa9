"""Train an SDIC compensation head (DIPN + DICN) over a frozen W+ encoder ("Spatial-Contextual
Discrepancy Information Compensation for GAN Inversion").

    latentspaces train sdic --out runs/sdic                    # default generator + 'default-wplus'
    latentspaces train sdic --out runs/sdic --resume           # continue a killed run
    latentspaces train sdic --out runs/sdic --data ~/ffhq --flip --generator ffhq.pt --base-encoder e4e.pt
    torchrun --nproc_per_node=4 -m experiments.cli train sdic --out runs/sdic   # data parallel: --batch split over 4

Each step: images x (`--data`: the default domain's faces, the generator's own samples at any
resolution, or a folder of photos; experiments/training/images.py), W = E(x) from the frozen base encoder, x0 = G(W), then
SDIC's compensated image y with W' and F^ (encoders/sdic.py; `--fusion base`, the released forward, fuses
G_l of W). Loss (SDIC's joint loss, the released coach's):

    l2 * ||y - x||^2 + per * P(y, x) + edit * (0.8 mean((F^ - G_l)^2) + 0.2 mean((W' - W)^2))

P: LPIPS when its backbone is installed, else the default model's D-features distance. The paper's
0.1 * ID(ArcFace) term needs a differentiable identity network; none ships offline, so it is off
unless one is added (dlib's descriptor is not differentiable). The paper trains with Ranger at 1e-3,
batch 2, 200k steps; here Adam 1e-3, batch 8, a few thousand steps on the 64 px default.
Every `--snap` steps (experiments/training/loop.py): checkpoint, log.csv row (held-out MSE of the base;
MSE, SSIM and calibrated identity of SDIC), loss plot, reconstruction grid. At the end: sdic.safetensors in the project's encoder format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch

import latentspaces as ls
from encoders import SDIC
from encoders.heads import compensate
from encoders.sdic import FUSIONS
from experiments.argtypes import non_negative_float, positive_float, positive_int
from experiments.config import option
from experiments.distributed import World
from experiments.training.heads import HeadTrainer, OverBaseConfig, train_head
from experiments.training.images import HeldoutScores
from latentspaces.images import save_images
from latentspaces.interfaces import Compensation, PerceptualDistance
from latentspaces.losses import ReconstructionLoss, mean_squared_error
from latentspaces.metrics.perceptual import make_perceptual


@dataclass(frozen=True)
class SDICConfig(OverBaseConfig):
    """`latentspaces train sdic`: an SDIC head over a frozen W+ encoder."""

    layer: Optional[str] = option(None, "compensated layer", default_text="encoders.sdic.default_sdic_layer")
    width: float = option(0.5, "channel multiplier (1.0: the paper's sizes)", type=positive_float)
    input_size: int = option(32, "side of the network input (paper: 256)", type=positive_int)
    fusion: str = option("base", "feature fused with DICN's map: G_l of the base codes W ('base', the released forward) "
                                 "or of the compensated W' ('compensated', our variant)", choices=FUSIONS)
    lambda_mse: float = option(1.0, "weight of the pixel MSE", type=non_negative_float)
    lambda_per: float = option(0.8, "weight of the perceptual distance", type=non_negative_float)
    lambda_edit: float = option(0.5, "weight of 0.8 map + 0.2 code distances", type=non_negative_float)


CONFIG = SDICConfig


def sdic_losses(comp: Compensation, x: torch.Tensor, ws: torch.Tensor, perceptual: Optional[PerceptualDistance],
                args: SDICConfig) -> Dict[str, torch.Tensor]:
    """The joint loss terms (scalars) of one batch: 'loss' (the weighted sum), 'l2', 'perceptual', 'edit'."""
    recon = ReconstructionLoss(perceptual, args.lambda_mse, args.lambda_per).batch(comp.image, x)
    edit = 0.8 * comp.cache["residual"].square().mean() + 0.2 * mean_squared_error(comp.ws, ws)
    total = recon["loss"] + args.lambda_edit * edit
    return {"loss": total, "l2": recon["pixel"], "perceptual": recon["perceptual"], "edit": edit}


class SDICTrainer(HeadTrainer):
    """SDIC's joint loss on DCGAN faces, over a frozen generator and a frozen W+ encoder."""

    name = "train SDIC"
    columns = ("step", "seconds", "loss", "l2", "perceptual", "edit", "heldout_mse_base", *HeldoutScores.COLUMNS)
    export_file = "sdic.safetensors"
    over_base_encoder = True

    def __init__(self, args: SDICConfig, out: Path, G: ls.Generator, world: World, device: torch.device):
        super().__init__(args, out, G, world, device)
        self.sdic = self.trained(SDIC.for_generator(G, args.layer, args.input_size, args.width, fusion=args.fusion))
        self.perceptual = make_perceptual(args.perceptual, G.resolution, device)
        self.opt = torch.optim.Adam(self.sdic.parameters(), lr=args.lr)
        self.data_gen = self.seeded(7)

    def checkpointed(self) -> Dict[str, object]:
        return {"sdic": self.sdic, "opt": self.opt}

    def generators(self) -> Dict[str, torch.Generator]:
        return {"data_gen": self.data_gen}

    def step(self, step: int) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            x = self.images.draw(self.batch, self.data_gen)
            ws = self.base(x)
            x0 = self.G.synthesis(ws, noise_mode="const")
        terms = sdic_losses(self.sdic.compensate(self.G, x, ws, x0), x, ws, self.perceptual, self.args)
        self.opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.world.average_gradients_(self.sdic.parameters())
        self.opt.step()
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def snapshot(self, step: int, values: Mapping[str, float]) -> Dict[str, float]:
        """Held-out MSE of the base reconstruction, MSE, SSIM and identity of SDIC's; the grid targets / base / SDIC."""
        if self.heldout is None:
            return {"heldout_mse_base": float("nan"), **self.scores(None)}
        self.sdic.eval()
        x0 = compensate(self.G, self.base, None, self.heldout).image
        y = compensate(self.G, self.base, self.sdic, self.heldout).image
        self.sdic.train()
        save_images(torch.cat([self.heldout[:8], x0[:8], y[:8]]), self.out / "reconstructions.png", nrow=8)
        return {"heldout_mse_base": mean_squared_error(x0, self.heldout).item(), **self.scores(y)}

    def export_meta(self, step: int) -> Dict[str, object]:
        return {"base_encoder": str(self.args.base_encoder),
                "identity_loss": "off (no differentiable identity network offline)"}


def train(args: SDICConfig) -> Path:
    return train_head(SDICTrainer, args)
