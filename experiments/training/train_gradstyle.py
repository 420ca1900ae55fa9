"""Train a GradStyle compensation head (gradual residual modules + global alignment) over a frozen W+ encoder
("Gradual Residuals Alignment: A Dual-Stream Framework for GAN Inversion and Image Attribute Editing").

    latentspaces train gradstyle --out runs/gradstyle            # default generator + 'default-wplus'
    latentspaces train gradstyle --out runs/gradstyle --resume   # continue a killed run
    latentspaces train gradstyle --out runs/gs_ft --init-from runs/gradstyle/checkpoint.pt

Each step: images x (`--data`: the default domain's faces, the generator's own samples, or a folder of
photos); W = E(x) and the pyramid T_m from one pass of the frozen
base encoder (`WPlusEncoder.forward_with_pyramid`); the reconstruction stream y (Eqs. 2-4) with residuals
F_m; the editing stream at alpha = 0 on perspective-warped residuals warp(F_m) (one random homography per
image, shared by the stages), whose GAM output F'_m is pulled to F_m (Eq. 10); see encoders/gradstyle.py.
Loss (Eq. 15, offline):

    l2 ||y - x||^2 + per P(y, x) + edit (l2 ||y' - x||^2 + per P(y', x)) + f L_f + aligner L_aligner
      + consistency L_ec  [+ adv (softplus(-D(y)) + softplus(-D(y')))]

y' the editing stream's image, L_f = sum_m mean |g_m F_m| (Eq. 5), L_aligner = sum_m mean |F'_m - F_m|
(Eq. 10, F_m detached: the target). P: LPIPS when its backbone is installed, else the default model's
D-features distance. ID is off (no differentiable identity network offline). The adversarial term is off
unless --lambda-adv > 0: a discriminator started from the default model's is trained beside the head
(non-saturating loss, lazy R1 on the real images: latentspaces/losses.py).
Edit consistency L_ec (not in the paper: our choice; --lambda-edit-consistency, 0 turns it off). Trained
with Eq. 15 alone, the head reconstructs very well but its residuals dominate the features, so edits barely
move its image: the shipped head of the first run (2493 steps, no L_ec) had an edit strength of 0.26 in
`latentspaces compensation --quick` (its mean pixel change under GANSpace edits at alpha +-2 over the base
encoder's), and dropping stages of its residuals at test time traded reconstruction for edit strength
without reaching 0.7 at a useful MSE (measured on 8 held-out targets, 5 GANSpace directions at alpha +-2,
where the full head scored 0.29 at MSE 0.0022: without the coarsest stage 0.53 at MSE 0.027; with only the
finest stage 0.75 at MSE 0.057, the base's MSE 0.063). L_ec asks the head's edit to move the image as the generator's edit
moves the base's: for an edit delta drawn like a real one (the editor of experiments/training/editing.py,
shared with the ReGANIE trainer: 1-3 of the 10 strongest GANSpace W directions at strengths uniform in
+-3 stds),
    L_ec = mean | (edit(W+ + delta) - y) - (G(W+ + delta) - G(W+)) |_1
on the first --edit-batch images, `edit` the anchored editing stream of `GradStyle.edit` on this step's
residuals and reconstruction features (gradients through both streams; the generator's difference is the
target). It is 0 for an untrained head (its edits are the base's exactly). The default weight is the
shipped head's (see encoders/gradstyle.py).
--init-from starts the head from an earlier run's checkpoint.pt or export (a fresh optimizer, step 0 in
--out): the shipped head was fine-tuned this way from the first run; the export's metadata records it.
Not in the paper (its appendix is not public), our choice: the weights l2 1, per 0.8, edit 0.5, f 0.01,
aligner 1; Adam at 5e-4, batch 8, gradients clipped to norm 1 (at 1e-3 without clipping a first run
diverged after ~350 steps: the residuals grew through the three stages); the warped residuals enter the
editing stream detached (it trains the GAMs and the shared gate, not E_res); the warp strength 0.1 (corner-scale perturbation of the homography);
the editing stream on the first --edit-batch = 2 images of each batch (it is ~10x the cost of the
reconstruction stream on a CPU). Every `--snap` steps (experiments/training/loop.py): checkpoint, log.csv
row (held-out MSE of the base and of GradStyle), loss plot, reconstruction grid. At the end:
gradstyle.safetensors in the project's encoder format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch

import latentspaces as ls
from encoders import GradStyle, load_encoder
from experiments.argtypes import file_text, fraction, non_negative_float, non_negative_int, positive_float, positive_int
from experiments.config import option
from experiments.distributed import World
from experiments.training.adversarial import discriminator_step
from experiments.training.editing import Editor, EditorConfig
from experiments.training.heads import HeadTrainer, OverBaseConfig, lr_option, train_head
from experiments.training.images import HeldoutScores
from experiments.training.warps import perspective_warp, random_homographies
from latentspaces.images import save_images
from latentspaces.losses import (
    ReconstructionLoss,
    default_r1_gamma,
    generator_loss,
    mean_absolute_error,
    mean_squared_error,
)
from latentspaces.metrics.perceptual import make_perceptual


@dataclass(frozen=True)
class GradStyleConfig(OverBaseConfig, EditorConfig):
    """`latentspaces train gradstyle`: a GradStyle head over a frozen W+ encoder, with its editing stream."""

    lr: float = lr_option(5e-4)
    hidden: Tuple[int, int, int] = option((32, 48, 64), "E_res width per stage", type=positive_int, nargs=3)
    gate_rank: int = option(16, "rank of W_g (0: full)", type=non_negative_int)
    heads: int = option(2, "attention heads", type=positive_int)
    head_dim: int = option(16, "d_k (paper: 64)", type=positive_int)
    top_mu: float = option(0.25, "fraction of attention scores kept per query, (0, 1]", type=fraction)
    gam_blocks: int = option(1, "GAM blocks", type=positive_int)
    edit_batch: int = option(2, "images per step through the editing stream", type=positive_int)
    warp: float = option(0.1, "perspective-warp strength", type=non_negative_float)
    lambda_mse: float = option(1.0, "weight of the pixel MSE", type=non_negative_float)
    lambda_per: float = option(0.8, "weight of the perceptual distance", type=non_negative_float)
    lambda_edit: float = option(0.5, "weight of the editing stream's image loss", type=non_negative_float)
    lambda_f: float = option(0.01, "L_f (Eq. 5)", type=non_negative_float)
    lambda_aligner: float = option(1.0, "L_aligner (Eq. 10)", type=non_negative_float)
    clip: float = option(1.0, "gradient-norm clip", type=positive_float)
    lambda_adv: float = option(0.0, "adversarial term with a trained discriminator (0: off)", type=non_negative_float)
    lambda_edit_consistency: float = option(1.0, "edit-consistency loss (not in the paper: our choice; 0 turns it off)",
                                            type=non_negative_float)
    init_from: Optional[str] = option(None, "start the head's weights from a GradStyle run's checkpoint.pt or exported "
                                            ".safetensors (fresh optimizer, step 0 in --out); the sizes must match",
                                      type=file_text, default_text="fresh weights")


CONFIG = GradStyleConfig


def edit_consistency_loss(head: GradStyle, G: ls.Generator, ws: torch.Tensor, image: torch.Tensor,
                          residuals: Sequence[torch.Tensor], features: Sequence[torch.Tensor],
                          delta: torch.Tensor) -> torch.Tensor:
    """Edit consistency (not in the paper: our choice): the head's edit should move its image as the
    generator's own edit moves the base's,

        mean | (edit(ws + delta) - image) - (G(ws + delta) - G(ws)) |_1,

    edit: the editing stream with anchored alignment (`GradStyle.edit`: residuals F_m and anchors f_m^rec
    from the reconstruction stream whose image is `image`). ws [N, num_ws, w_dim], delta alike; gradients
    reach the head through both its edit and its reconstruction; the generator's difference is the target.
    An untrained head (zero residuals) gives exactly 0."""
    with torch.no_grad():
        target = G.synthesis(ws + delta, noise_mode="const") - G.synthesis(ws, noise_mode="const")
    edited = head.edit_stream(G, ws + delta, residuals, features)[0]
    return mean_absolute_error(edited - image, target)


def init_head(head: GradStyle, path: Path, device: torch.device) -> Dict[str, object]:
    """Load `path` (a GradStyle trainer's checkpoint.pt, or an exported .safetensors) into `head`; returns
    {'init_from': path, 'init_steps': the steps it was trained} for the export's metadata."""
    path = Path(path)
    if path.suffix == ".pt":
        st = torch.load(path, map_location=device, weights_only=True)
        if "gradstyle" not in st:
            raise SystemExit(f"{path} is no GradStyle trainer's checkpoint (no 'gradstyle' entry)")
        state, steps = st["gradstyle"], int(st["step"]) if "step" in st else None
    else:
        src = load_encoder(path, device=device)
        if not isinstance(src, GradStyle):
            raise SystemExit(f"{path} holds a {type(src).__name__}, not a GradStyle head")
        if src.config != head.config:
            raise SystemExit(f"{path} has the sizes {src.config}; this run builds {head.config}")
        state, steps = src.state_dict(), (src.meta or {}).get("steps")
    head.load_state_dict({k: v.float() for k, v in state.items()})
    return {"init_from": str(path), "init_steps": steps}


class GradStyleTrainer(HeadTrainer):
    """GradStyle's two streams on DCGAN faces, over a frozen generator and a frozen W+ encoder."""

    name = "train GradStyle"
    columns = ("step", "seconds", "loss", "l2", "perceptual", "edit", "l_f", "aligner", "adv", "edit_consistency",
               "loss_D", "heldout_mse_base", *HeldoutScores.COLUMNS)
    export_file = "gradstyle.safetensors"
    over_base_encoder = True

    def __init__(self, args: GradStyleConfig, out: Path, G: ls.Generator, world: World, device: torch.device):
        super().__init__(args, out, G, world, device)
        head = GradStyle.for_generator(
            G, self.base, base_encoder=str(args.base_encoder), hidden=tuple(args.hidden), gate_rank=args.gate_rank,
            heads=args.heads, head_dim=args.head_dim, top_mu=args.top_mu, gam_blocks=args.gam_blocks)
        self.init_meta = init_head(head, args.init_from, device) if args.init_from is not None else {}
        self.head = self.trained(head)
        self.editor = Editor(G, args, device) if args.lambda_edit_consistency > 0 else None
        self.perceptual = make_perceptual(args.perceptual, G.resolution, device)
        self.reconstruction = ReconstructionLoss(self.perceptual, args.lambda_mse, args.lambda_per)
        self.D = self.opt_D = self.D_start = None
        if args.lambda_adv > 0:
            self.D = self.adversary()
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=args.lr, betas=(0.0, 0.99))
        self.opt = torch.optim.Adam(self.head.parameters(), lr=args.lr)
        self.data_gen = self.seeded(7)

    def checkpointed(self) -> Dict[str, object]:
        nets = {"gradstyle": self.head, "opt": self.opt}
        if self.D is not None:
            nets.update(D=self.D, opt_D=self.opt_D)
        return nets

    def generators(self) -> Dict[str, torch.Generator]:
        return {"data_gen": self.data_gen}

    def _image_terms(self, y: torch.Tensor, x: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """(the reconstruction terms of y against x, the adversarial term of y), scalars."""
        adv = generator_loss(self.D(y)) if self.D is not None else torch.zeros((), device=x.device)
        return self.reconstruction.batch(y, x), adv

    def edit_consistency(self, ws: torch.Tensor, y: torch.Tensor, residuals: Sequence[torch.Tensor],
                         cache: Mapping[str, torch.Tensor], delta: torch.Tensor) -> torch.Tensor:
        """mean |(edit(ws + delta) - y) - (G(ws + delta) - G(ws))| for the first k = len(ws) images (see
        `edit_consistency_loss`); residuals and cache from `reconstruct` of the whole batch."""
        k = ws.shape[0]
        return edit_consistency_loss(self.head, self.G, ws, y, [r[:k] for r in residuals],
                                     [cache[f"feature.{n}"][:k] for n in self.head.layers], delta)

    def step(self, step: int) -> Dict[str, torch.Tensor]:
        a, head = self.args, self.head
        with torch.no_grad():
            x = self.images.draw(self.batch, self.data_gen)
            ws, pyramid = self.base.forward_with_pyramid(x)
        maps = head.check_pyramid(pyramid)
        y, cache = head.reconstruct(self.G, ws, maps)
        residuals = [cache[f"residual.{n}"] for n in head.layers]
        l_f = sum(cache[f"gated.{n}"].abs().mean() for n in head.layers)
        # Editing stream at alpha = 0 on warped residuals, F_m the aligner's target (Eq. 10).
        k = min(a.edit_batch, self.batch)
        hom = random_homographies(k, a.warp, self.data_gen)
        warped = [perspective_warp(r[:k].detach(), hom) for r in residuals]
        y_edit, aligned = head.edit_stream(self.G, ws[:k], warped)
        aligner = sum(mean_absolute_error(f, r[:k].detach()) for f, r in zip(aligned, residuals))
        if self.D is not None:
            self.D.requires_grad_(False)
        recon, adv = self._image_terms(y, x)
        recon_e, adv_e = self._image_terms(y_edit, x[:k])
        edit = recon_e["loss"]
        consistency = (self.edit_consistency(ws[:k], y[:k], residuals, cache, self.editor(k, self.data_gen))
                       if self.editor is not None else torch.zeros((), device=x.device))
        total = (recon["loss"] + a.lambda_edit * edit + a.lambda_f * l_f
                 + a.lambda_aligner * aligner + a.lambda_adv * (adv + adv_e)
                 + a.lambda_edit_consistency * consistency)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.world.average_gradients_(self.head.parameters())
        torch.nn.utils.clip_grad_norm_(self.head.parameters(), a.clip)
        self.opt.step()
        terms = {"loss": total, "l2": recon["pixel"], "perceptual": recon["perceptual"], "edit": edit, "l_f": l_f, "aligner": aligner,
                 "adv": adv + adv_e, "edit_consistency": consistency}
        if self.D is not None:  # the discriminator's step: both streams' images are fakes, the batch the reals
            terms["loss_D"] = discriminator_step(self.D, self.opt_D, torch.cat([y, y_edit]), x, step,
                                                 default_r1_gamma(x.shape[-1], a.batch), self.world.average_gradients_)
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def snapshot(self, step: int, values: Mapping[str, float]) -> Dict[str, float]:
        """Held-out MSE of the base reconstruction, MSE, SSIM and identity of GradStyle's; the grid targets / base /
        GradStyle."""
        extra = {} if "loss_D" in values else {"loss_D": float("nan")}
        if self.heldout is None:
            return {**extra, "heldout_mse_base": float("nan"), **self.scores(None)}
        self.head.eval()
        ws, pyramid = self.base.forward_with_pyramid(self.heldout)
        x0 = self.G.synthesis(ws, noise_mode="const")
        y = self.head.compensate(self.G, self.heldout, ws, x0, pyramid=pyramid).image
        self.head.train()
        save_images(torch.cat([self.heldout[:8], x0[:8], y[:8]]), self.out / "reconstructions.png", nrow=8)
        return {**extra, "heldout_mse_base": mean_squared_error(x0, self.heldout).item(), **self.scores(y)}

    def export_meta(self, step: int) -> Dict[str, object]:
        return {"base_encoder": str(self.args.base_encoder),
                "identity_loss": "off (no differentiable identity network offline)",
                "adversarial": "off" if self.D is None else {"weight": self.args.lambda_adv,
                                                             "discriminator": f"trained from {self.D_start}"},
                "edit_consistency": ({"weight": self.args.lambda_edit_consistency, "editor": self.editor.meta()}
                                     if self.editor is not None else "off"),
                **self.init_meta}


def train(args: GradStyleConfig) -> Path:
    return train_head(GradStyleTrainer, args)
