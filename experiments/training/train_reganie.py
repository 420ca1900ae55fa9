"""Train ReGANIE's rectifying network (Phase II) over a frozen generator and a frozen W+ encoder
("ReGANIE: Rectifying GAN Inversion Errors for Accurate Real Image Editing", Algorithm 1 and Eq. 9).

    latentspaces train reganie --out runs/reganie           # default generator + 'default-wplus'
    latentspaces train reganie --out runs/reganie --resume  # continue a killed run
    latentspaces train reganie --out runs/reganie --output residual   # y^ + G_p(...)

Generated pairs (the paper's data), and photos when --data is a folder. Each step, per generated sample: w = mapping(z), x = G(w), y = G(editor(w)), where the editor
adds 1-3 W directions (uniform count, distinct directions) at strengths uniform in [-edit_max, edit_max];
the inversions x^ = G(E(x)), y^ = G(E(y)) by the frozen base encoder E. Each sample draws one of the three
triplets (residual, rendered, target) = (y - y^, x^, x), (x - x^, y^, y), (x - x^, x^, x) uniformly (per
sample, not per batch: our choice). A photo x of a --data folder (1 - --synthetic-ratio of each batch;
the ratio is 1 for 'default' and 'generator', 0.5 for a folder) gives the one triplet it has, (x - x^,
x^, x): the reconstruction the network must learn on what the generator cannot render, which edited
pairs of generated images never show. The network's output G_p(E_p(rendered), E_d(residual)) is pulled
to the target by (Eq. 9)

    l1 * |out - target| + per * P(out, target) + gan * softplus(-D(out))

with D trained by the logistic loss (fakes: the outputs; reals: the targets) and lazy R1 on the targets
every 16 steps (latentspaces/losses.py, shared with the StyleGAN2 trainer). D starts from the
default model's discriminator. P: LPIPS when its backbone is installed, else the default model's
D-features distance. No ID loss (the paper has none).

Directions: the strongest `--ganspace-components` GANSpace W directions (PCA of `--ganspace-samples`
mapped codes, scaled by their axis' standard deviation, so strengths are in standard deviations), found
at the start with `latentspaces.directions.ganspace`; or a file of W directions (`--directions`, e.g.
InterfaceGAN normals saved by `latentspaces.directions.save_directions`). The paper uses DyStyle. The
editor lives in experiments/training/editing.py (shared with the GradStyle trainer).

Paper: Adam lr 0.002, betas (0, 0.99), batch 8, 100k iterations at 512 px. Here batch 8, lr 0.001 and
betas (0.9, 0.99) for the network (`--adam-beta1`; not the paper's: our choice). With beta1 = 0 the
network did not learn at this scale: overfitting one batch of 8 in residual mode with L1 alone, 60 steps
left the L1 at 0.147 -> 0.147 with beta1 0 and took it to 0.087 with beta1 0.9; two 300-500-step runs
with beta1 0 kept the held-out MSE within 2 % of the base's. In a 50-step probe of direct mode (beta1 0),
lr 0.001 reached a held-out MSE of 0.263 against 0.268 for 0.002. D: Adam betas (0, 0.99) with lr and
beta2 corrected for lazy R1 as in StyleGAN2. Not in the paper, our choices too: the loss weights (l1 1,
per 0.2, gan 0.02: with per 1 and gan 0.1 the GAN term spiked, loss up to ~1000 within a snapshot window),
R1 gamma 0.0002 R^2 / batch (StyleGAN2's 'auto'), D's reals = the targets, the editor's distribution
(1-3 of the 10 strongest GANSpace axes, strengths within 3 stds).
The shipped default-reganie was trained with `--output residual` (see encoders/reganie.py): in the CPU
time available (about 25 minutes on a shared core) there was no room for a full direct-mode run.
Every `--snap` steps (experiments/training/loop.py): checkpoint, log.csv row (held-out MSE of the base;
MSE, SSIM and calibrated identity of ReGANIE on the held-out images), loss plot (loss and held-out MSE against steps), and a grid
targets / base / ReGANIE. At the end: reganie.safetensors in the project's encoder format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch

import latentspaces as ls
from encoders import ReGANIE
from experiments.argtypes import non_negative_float, positive_int
from experiments.config import option
from experiments.distributed import World
from experiments.training.common import probability, snap_option
from experiments.training.editing import Editor, EditorConfig
from experiments.training.heads import HeadTrainer, OverBaseConfig, steps_option, train_head
from experiments.training.images import HeldoutScores, is_folder_source, synthetic_ratio_option
from latentspaces.images import save_images
from latentspaces.losses import (
    R1_INTERVAL,
    ReconstructionLoss,
    default_r1_gamma,
    discriminator_loss,
    generator_loss,
    lazy_r1_term,
    mean_squared_error,
    r1_penalty,
)
from latentspaces.metrics.perceptual import make_perceptual

TRIPLETS = ("(y - y^, x^, x)", "(x - x^, y^, y)", "(x - x^, x^, x)")  # (residual, rendered, target)


@dataclass(frozen=True)
class ReGANIEConfig(OverBaseConfig, EditorConfig):
    """`latentspaces train reganie`: ReGANIE's rectifying network (phase II) over a frozen W+ encoder."""

    snap: int = snap_option(50)
    steps: int = steps_option(3000)
    output: str = option("direct", "'direct': G_p's image (the paper's); 'residual': y^ + G_p(...)",
                         choices=("direct", "residual"))
    downsamplings: Optional[int] = option(None, "halvings of E_p's map", type=positive_int,
                                          default_text="encoders.reganie.default_reganie_sizes, 2 at 64 px; the "
                                                       "paper: 4 at 512 px")
    channels: Optional[dict] = option(None, 'JSON {res: ch}, e.g. \'{"64": 32, "32": 48, "16": 64}\'',
                                      type=json.loads, default_text="the network's")
    sp_channels: int = option(32, "channels of the spatial residual code", type=positive_int)
    gl_dim: int = option(64, "length of the global residual code", type=positive_int)
    lambda_l1: float = option(1.0, "weight of the pixel L1", type=non_negative_float)
    lambda_per: float = option(0.2, "weight of the perceptual distance", type=non_negative_float)
    lambda_gan: float = option(0.02, "weight of the adversarial loss", type=non_negative_float)
    adam_beta1: float = option(0.9, "Adam's beta1 for the network (paper: 0)", type=probability)
    gamma: Optional[float] = option(None, "R1 weight", type=non_negative_float, default_text="0.0002 R^2 / batch")
    synthetic_ratio: Optional[float] = synthetic_ratio_option("1 for default/generator (generated pairs, as the "
                                                              "paper), 0.5 for a folder")


CONFIG = ReGANIEConfig


class ReGANIETrainer(HeadTrainer):
    """Phase II of ReGANIE on generated pairs (and photos), over a frozen generator and a frozen W+ encoder."""

    name = "train ReGANIE"
    columns = ("step", "seconds", "loss", "l1", "perceptual", "gan_G", "loss_D", "r1", "heldout_mse_base",
               *HeldoutScores.COLUMNS)
    export_file = "reganie.safetensors"
    over_base_encoder = True

    def __init__(self, args: ReGANIEConfig, out: Path, G: ls.Generator, world: World, device: torch.device):
        super().__init__(args, out, G, world, device)
        self.net = self.trained(ReGANIE.for_generator(G, downsamplings=args.downsamplings, channels=args.channels,
                                                      sp_channels=args.sp_channels, gl_dim=args.gl_dim,
                                                      output=args.output))
        self.D = self.adversary()
        self.perceptual = make_perceptual(args.perceptual, G.resolution, device)
        self.reconstruction = ReconstructionLoss(self.perceptual, args.lambda_l1, args.lambda_per, pixel="l1")
        ratio = R1_INTERVAL / (R1_INTERVAL + 1)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=args.lr, betas=(args.adam_beta1, 0.99), eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=args.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
        self.gamma = args.gamma if args.gamma is not None else default_r1_gamma(G.resolution, args.batch)
        self.editor = Editor(G, args, device)
        self.data_gen = self.seeded(7)

    def default_synthetic_ratio(self, data: str) -> float:
        return 0.5 if is_folder_source(data) else 1.0

    def checkpointed(self) -> Dict[str, object]:
        return {"reganie": self.net, "D": self.D, "opt": self.opt, "opt_D": self.opt_D}

    def generators(self) -> Dict[str, torch.Generator]:
        return {"data_gen": self.data_gen}

    @torch.no_grad()
    def triplets(self):
        """(residual, rendered, target) [B, 3, R, R] each: one of the three triplets per generated sample, then
        (x - x^, x^, x) per photo of --data."""
        parts = []
        if self.images.n_synthetic:
            parts.append(self.generated_triplets(self.images.n_synthetic))
        if self.images.n_source:
            x = self.images.draw_source(self.images.n_source, self.data_gen)
            xh = self.G.synthesis(self.base(x), noise_mode="const")
            parts.append((x - xh, xh, x))
        return tuple(torch.cat(p) for p in zip(*parts))

    @torch.no_grad()
    def generated_triplets(self, n: int):
        """(residual, rendered, target) [n, 3, R, R] each of generated pairs, one of the three triplets per sample."""
        G, gen = self.G, self.data_gen
        z = torch.randn(n, G.z_dim, generator=gen, device=gen.device).to(self.device)
        ws_x = G.broadcast(G.mapping(z))
        ws_y = ws_x + self.editor(n, gen)
        x, y = G.synthesis(ws_x, noise_mode="const"), G.synthesis(ws_y, noise_mode="const")
        xh = G.synthesis(self.base(x), noise_mode="const")
        yh = G.synthesis(self.base(y), noise_mode="const")
        pick = torch.randint(0, 3, (n,), generator=gen, device=gen.device).to(self.device)[:, None, None, None]
        residual = torch.where(pick == 0, y - yh, x - xh)
        rendered = torch.where(pick == 0, xh, torch.where(pick == 1, yh, xh))
        target = torch.where(pick == 1, y, x)
        return residual, rendered, target

    def step(self, step: int) -> Dict[str, torch.Tensor]:
        args = self.args
        residual, rendered, target = self.triplets()
        # Rectifying-network step (Eq. 9).
        self.D.requires_grad_(False)
        out = self.net(rendered, residual)
        recon = self.reconstruction.batch(out, target)
        l1, per = recon["pixel"], recon["perceptual"]
        gan = generator_loss(self.D(out)) if args.lambda_gan > 0 else torch.zeros((), device=out.device)
        loss = recon["loss"] + args.lambda_gan * gan
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.world.average_gradients_(self.net.parameters())
        self.opt.step()
        terms = {"loss": loss.detach(), "l1": l1.detach(), "perceptual": per.detach(), "gan_G": gan.detach()}
        if args.lambda_gan == 0:
            return terms
        # Discriminator step: logistic loss, plus lazy R1 on the targets.
        self.D.requires_grad_(True)
        loss_D = discriminator_loss(self.D(out.detach()), self.D(target))
        if step % R1_INTERVAL == 0:
            r1 = r1_penalty(self.D, target)
            loss_D = loss_D + lazy_r1_term(r1, self.gamma, R1_INTERVAL)
            terms["r1"] = r1.detach()
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.world.average_gradients_(self.D.parameters())
        self.opt_D.step()
        terms["loss_D"] = loss_D.detach()
        return terms

    @torch.no_grad()
    def snapshot(self, step: int, values: Mapping[str, float]) -> Dict[str, float]:
        """Held-out MSE of the base reconstruction, MSE, SSIM and identity of ReGANIE's; grid targets / base / ReGANIE."""
        extra = {k: float("nan") for k in ("r1", "loss_D") if k not in values}   # no R1 (or no D) step in this window
        if self.heldout is None:
            return {**extra, "heldout_mse_base": float("nan"), **self.scores(None)}
        self.net.eval()
        ws = self.base(self.heldout)
        x0 = self.G.synthesis(ws, noise_mode="const")
        y = self.net.compensate(self.G, self.heldout, ws, x0).image
        self.net.train()
        save_images(torch.cat([self.heldout[:8], x0[:8], y[:8].clamp(-1, 1)]), self.out / "reconstructions.png", nrow=8)
        return {**extra, "heldout_mse_base": mean_squared_error(x0, self.heldout).item(), **self.scores(y)}

    def export_meta(self, step: int) -> Dict[str, object]:
        return {"base_encoder": str(self.args.base_encoder), "output": self.args.output,
                "discriminator_start": self.D_start,
                "editor": self.editor.meta(),
                "loss": {"l1": self.args.lambda_l1, "perceptual": self.args.lambda_per, "gan": self.args.lambda_gan,
                         "gamma": self.gamma},
                "identity_loss": "none (the paper has none)"}


def train(args: ReGANIEConfig) -> Path:
    return train_head(ReGANIETrainer, args)
