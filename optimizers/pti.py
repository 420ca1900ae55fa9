"""PTI-style generator tuning (Roich et al. 2021): a W pivot by projection, then the generator tuned to it.

    result = PTI(G, perceptual=dist).run(targets)      # result.generator: a tuned copy of G
    ls.FZPlus(result.generator)                          # every space can use the tuned generator

1. Pivot: one w per image, `HybridInverter` on the W space with PTI's projector schedule
   (optimizers/schedules.py `ProjectorSchedule`): Adam, lr 0.01 peak with a 5%
   linear warm-up and a cosine ramp-down over the last 25%, Gaussian noise added to w with std
   0.05 * std(W) * max(0, 1 - t / 0.75)^2, loss lambda_mse MSE + lambda_per P. 450 steps in PTI.
   PTI also optimizes the per-layer noise maps with a 1e5 regulariser; here noise is held constant
   (noise_mode='const'), so there is nothing to regularise.
2. Tuning: all synthesis weights, Adam 3e-4, loss lambda_mse MSE + lambda_per P of G'(w_pivot) against
   the target, 350 steps, stopping early once every image's perceptual distance is <= stop_threshold
   (PTI: LPIPS 0.06). Optional locality regulariser: codes w_r = w_p + 30 (w_z - w_p) / ||w_z - w_p||
   (w_z from z with truncation 0.5) must render the same under the original and the tuned generator
   (0.1 L2 + 0.1 P).
`per_image=False` (default) tunes one generator for the whole batch (PTI's multi-image mode) and
copies G once; `per_image=True` tunes one copy per image (PTI's single-image mode) and returns a list.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import List, Optional, Union

import torch

from latentspaces.interfaces import PerceptualDistance
from latentspaces.losses import ReconstructionLoss
from latentspaces.progress import progress_bar
from latentspaces.spaces import W
from latentspaces.spaces.w import w_spread
from optimizers.hybrid import HybridInverter
from optimizers.schedules import ProjectorSchedule, projector_lr


PIVOT_STEPS = 450   # W projection steps of "Pivotal Tuning for Latent-based Editing of Real Images" (Sec. 4)
TUNE_STEPS = 350    # generator tuning steps (same)


@dataclass
class PTIResult:
    """generator: the tuned G (or one per image with per_image=True); pivots: w [N, w_dim];
    images: tuned G(pivot) [N, 3, R, R]; pivot_images: G(pivot) before tuning; history: per-step terms."""

    generator: Union[torch.nn.Module, List[torch.nn.Module]]
    pivots: torch.Tensor
    images: torch.Tensor
    pivot_images: torch.Tensor
    seconds: float
    pivot_seconds: float
    tune_steps_run: List[int]
    history: dict = field(default_factory=dict)


pivot_lr = projector_lr   # PTI's name for the projector's lr schedule


class PTI:
    """Pivotal Tuning Inversion: a W pivot per image, then the generator's synthesis weights tuned to it
    (module docstring). `run(targets)` returns a `PTIResult` with the tuned generator(s)."""

    def __init__(
        self,
        G,                                      # generator to tune (not modified: tuned copies are returned)
        pivot_steps: int = PIVOT_STEPS,         # W projection steps
        pivot_lr_max: float = 0.01,             # peak learning rate of the projection
        tune_steps: int = TUNE_STEPS,           # generator tuning steps
        tune_lr: float = 3e-4,                  # Adam learning rate of the tuning
        lambda_mse: float = 1.0,                 # pixel MSE weight (both phases)
        lambda_per: float = 1.0,                # perceptual weight (both phases)
        perceptual: Optional[PerceptualDistance] = None,  # d(x, y) -> [N]; LPIPS in PTI
        stop_threshold: Optional[float] = None,  # stop tuning when every image's d <= this (PTI: LPIPS 0.06)
        locality: bool = False,                 # PTI's locality regulariser
        per_image: bool = False,                # one tuned generator per image (PTI's single-image mode)
        w_std_samples: int = 10_000,            # mapping samples for std(W) of the pivot noise
        progress: bool = True,
    ):
        self.G = G
        self.pivot_steps, self.pivot_lr_max = pivot_steps, pivot_lr_max
        self.tune_steps, self.tune_lr = tune_steps, tune_lr
        self.lambda_mse, self.lambda_per, self.perceptual = lambda_mse, lambda_per, perceptual
        self.stop_threshold, self.locality, self.per_image = stop_threshold, locality, per_image
        self.w_std_samples, self.progress = w_std_samples, progress

    @property
    def reconstruction(self) -> ReconstructionLoss:
        """lambda_mse MSE + lambda_per P, the image loss of both phases."""
        return ReconstructionLoss(self.perceptual, lambda_pixel=self.lambda_mse, lambda_per=self.lambda_per)

    def find_pivots(self, targets: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """W pivots [N, w_dim] for targets [N, 3, R, R] (images independent: losses are summed).

        `HybridInverter` on the W space from w_avg with the projector's schedule, so the pivot gets the
        inverter's target checks and divergence diagnosis."""
        inverter = HybridInverter(W(self.G), steps=self.pivot_steps, lr=self.pivot_lr_max, lambda_per=self.lambda_per,
                                  lambda_reg=0.0, lambda_mse=self.lambda_mse, perceptual=self.perceptual,
                                  progress=self.progress, schedule=ProjectorSchedule(w_spread(self.G, self.w_std_samples), seed=seed))
        return inverter.invert(targets, init="mean").code.w

    def tune(self, targets: torch.Tensor, pivots: torch.Tensor, seed: int = 0):
        """A tuned copy of G for targets [N, 3, R, R] and their pivots [N, w_dim]: (G', steps run, history)."""
        G0 = self.G
        G1 = copy.deepcopy(G0).train(False)
        G1.requires_grad_(False)
        G1.synthesis.requires_grad_(True)
        opt = torch.optim.Adam([p for p in G1.synthesis.parameters() if p.requires_grad], lr=self.tune_lr)
        ws = G1.broadcast(pivots)
        gen = torch.Generator().manual_seed(seed + 1)
        history = {"loss": [], "perceptual": []}
        steps_run = 0
        for step in progress_bar(range(self.tune_steps), desc="PTI tune", disable=not self.progress, leave=False):
            images = G1.synthesis(ws, noise_mode="const")
            terms = self.reconstruction.per_image(images, targets)
            loss, per = terms["loss"], terms.get("perceptual")
            history["loss"].append(loss.detach().cpu())
            if per is not None:
                history["perceptual"].append(per.detach().cpu())
                if self.stop_threshold is not None and bool((per <= self.stop_threshold).all()):
                    break
            total = loss.sum()
            if self.locality:
                total = total + self._locality_loss(G0, G1, pivots, gen)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            steps_run = step + 1
        G1.requires_grad_(False)
        return G1.eval(), steps_run, {k: torch.stack(v) for k, v in history.items() if v}

    def _locality_loss(self, G0, G1, pivots: torch.Tensor, gen: torch.Generator, alpha: float = 30.0,
                       psi: float = 0.5) -> torch.Tensor:
        z = torch.randn(pivots.shape[0], G0.z_dim, generator=gen).to(pivots.device)
        with torch.no_grad():
            w_z = G0.truncate(G0.mapping(z), psi)
            d = w_z - pivots
            w_r = G0.broadcast(pivots + alpha * d / d.norm(dim=1, keepdim=True).clamp_min(1e-8))
            ref = G0.synthesis(w_r, noise_mode="const")
        img = G1.synthesis(w_r, noise_mode="const")
        return ReconstructionLoss(self.perceptual, lambda_pixel=0.1, lambda_per=0.1).per_image(img, ref)["loss"].sum()

    def run(self, targets: torch.Tensor, seed: int = 0) -> PTIResult:
        """Pivot, then tune: one generator for the batch, or one per image with per_image=True."""
        R = self.G.resolution
        if targets.ndim != 4 or tuple(targets.shape[1:]) != (self.G.img_channels, R, R):
            raise ValueError(f"targets must be [N, {self.G.img_channels}, {R}, {R}] in [-1, 1], got {tuple(targets.shape)}")
        t0 = time.perf_counter()
        pivots = self.find_pivots(targets, seed)
        t_pivot = time.perf_counter() - t0
        with torch.no_grad():
            pivot_images = self.G.synthesis(self.G.broadcast(pivots), noise_mode="const")
        if self.per_image:
            tuned, steps, images, hist = [], [], [], []
            for i in range(targets.shape[0]):
                g, s, h = self.tune(targets[i:i + 1], pivots[i:i + 1], seed + i)
                tuned.append(g)
                steps.append(s)
                hist.append(h)
                with torch.no_grad():
                    images.append(g.synthesis(g.broadcast(pivots[i:i + 1]), noise_mode="const"))
            images = torch.cat(images)
            history = {"per_image": hist}
        else:
            tuned, s, history = self.tune(targets, pivots, seed)
            steps = [s] * targets.shape[0]
            with torch.no_grad():
                images = tuned.synthesis(tuned.broadcast(pivots), noise_mode="const")
        return PTIResult(tuned, pivots, images, pivot_images, time.perf_counter() - t0, t_pivot, steps, history)
