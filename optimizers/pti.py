"""PTI-style generator tuning (Roich et al. 2021): a W pivot by projection, then the generator tuned to it.

    result = PTI(G, perceptual=dist).run(targets)      # result.generator: a tuned copy of G
    ls.FZPlus(result.generator)                          # every space can use the tuned generator

1. Pivot: one w per image (W space), projected as in PTI's projector: Adam, lr 0.01 peak with a 5%
   linear warm-up and a cosine ramp-down over the last 25%, Gaussian noise added to w with std
   0.05 * std(W) * max(0, 1 - t / 0.75)^2, loss lambda_l2 MSE + lambda_per P. 450 steps in PTI.
   PTI also optimizes the per-layer noise maps with a 1e5 regulariser; here noise is held constant
   (noise_mode='const'), so there is nothing to regularise.
2. Tuning: all synthesis weights, Adam 3e-4, loss lambda_l2 MSE + lambda_per P of G'(w_pivot) against
   the target, 350 steps, stopping early once every image's perceptual distance is <= stop_threshold
   (PTI: LPIPS 0.06). Optional locality regulariser: codes w_r = w_p + 30 (w_z - w_p) / ||w_z - w_p||
   (w_z from z with truncation 0.5) must render the same under the original and the tuned generator
   (0.1 L2 + 0.1 P).
`per_image=False` (default) tunes one generator for the whole batch (PTI's multi-image mode) and
copies G once; `per_image=True` tunes one copy per image (PTI's single-image mode) and returns a list.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import List, Optional, Union

import torch
from tqdm.auto import tqdm

from latentspaces.interfaces import PerceptualDistance


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


def pivot_lr(step: int, steps: int, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """PTI's projector schedule: linear warm-up over `rampup`, cosine ramp-down over the last `rampdown`."""
    t = step / max(steps, 1)
    down = min(1.0, (1.0 - t) / rampdown)
    down = 0.5 - 0.5 * math.cos(down * math.pi)
    return lr * down * min(1.0, t / rampup)


class PTI:
    def __init__(
        self,
        G,                                      # generator to tune (not modified: tuned copies are returned)
        pivot_steps: int = 450,                 # W projection steps
        pivot_lr_max: float = 0.01,             # peak learning rate of the projection
        tune_steps: int = 350,                  # generator tuning steps
        tune_lr: float = 3e-4,                  # Adam learning rate of the tuning
        lambda_l2: float = 1.0,                 # pixel MSE weight (both phases)
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
        self.lambda_l2, self.lambda_per, self.perceptual = lambda_l2, lambda_per, perceptual
        self.stop_threshold, self.locality, self.per_image = stop_threshold, locality, per_image
        self.w_std_samples, self.progress = w_std_samples, progress

    def _loss(self, images: torch.Tensor, targets: torch.Tensor):
        """(per-image loss [N], per-image perceptual [N] or None)."""
        loss = self.lambda_l2 * (images - targets).square().flatten(1).mean(1)
        per = None
        if self.perceptual is not None and self.lambda_per:
            per = self.perceptual(images, targets).reshape(-1)
            loss = loss + self.lambda_per * per
        return loss, per

    @torch.no_grad()
    def _w_std(self) -> float:
        gen = torch.Generator().manual_seed(123)
        w = self.G.mapping(torch.randn(self.w_std_samples, self.G.z_dim, generator=gen).to(self.G.w_avg.device))
        return ((w - w.mean(0)).square().sum() / self.w_std_samples).sqrt().item()

    def find_pivots(self, targets: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """W pivots [N, w_dim] for targets [N, 3, R, R] (images independent: losses are summed)."""
        G = self.G
        n = targets.shape[0]
        w_std = self._w_std()
        w = G.w_avg.detach().clone()[None].repeat(n, 1).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.pivot_lr_max, betas=(0.9, 0.999))
        gen = torch.Generator().manual_seed(seed)
        noise = [torch.randn(n, G.w_dim, generator=gen) for _ in range(self.pivot_steps)]
        for step in tqdm(range(self.pivot_steps), desc="PTI pivot", disable=not self.progress, leave=False):
            t = step / max(self.pivot_steps, 1)
            for group in opt.param_groups:
                group["lr"] = pivot_lr(step, self.pivot_steps, self.pivot_lr_max)
            w_noise = noise[step].to(w.device) * w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
            images = G.synthesis(G.broadcast(w + w_noise), noise_mode="const")
            loss, _ = self._loss(images, targets)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        return w.detach()

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
        for step in tqdm(range(self.tune_steps), desc="PTI tune", disable=not self.progress, leave=False):
            images = G1.synthesis(ws, noise_mode="const")
            loss, per = self._loss(images, targets)
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
        loss = 0.1 * (img - ref).square().flatten(1).mean(1).sum()
        if self.perceptual is not None:
            loss = loss + 0.1 * self.perceptual(img, ref).sum()
        return loss

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
                tuned.append(g); steps.append(s); hist.append(h)
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
