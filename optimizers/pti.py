"""PTI generator tuning ("Pivotal Tuning for Latent-based Editing of Real Images", Roich et al. 2021): a W pivot
per image, then the generator tuned to it.

    result = PTI(G, perceptual=dist).run(targets)      # result.generator: a tuned copy of G
    ls.FZPlus(result.generator)                          # every space can use the tuned generator

A `PTIRecipe` says what runs; `PTI_RECIPES['released']` (the default) is danielroich/PTI as released
(configs/hyperparameters.py and its projector), `PTI_RECIPES['ours']` this project's earlier form:

| | released | ours |
| --- | --- | --- |
| pivot loss | the perceptual distance alone + 1e5 x the noise maps' autocorrelation (StyleGAN2's projector) | lambda_mse MSE + lambda_per P |
| noise maps in the pivot | optimised with w on a copy of G, renormalised each step, then dropped | constant |
| pivot start, noise scale | the mean and spread of 600 w mapped from RandomState(123) z | G's w_avg; spread of 10,000 w |
| tuning distance | LPIPS-AlexNet (a stand-in, named in the record, where its backbone is not local) | the distance passed |
| early stop | an image's tuning distance <= 0.06, checked before the step (one image on one G) | none |
| locality regulariser (off in both) | w_p + 30 (w_z - w_p) / norm of the whole [num_ws, w_dim] difference, noise 'none' | the same |
| several images on one G | one Adam step per image per iteration | one step on the summed loss |

Both: pivot 450 Adam steps, lr 0.01 peak with a 5% linear warm-up and a cosine ramp-down over the last
25% (`schedules.projector_lr`; the release's first_inv_lr = 5e-3 is overwritten by that schedule at every
step), Gaussian noise on w of std 0.05 * spread * max(0, 1 - t / 0.75)^2; tuning: the synthesis weights,
Adam 3e-4, loss lambda_mse MSE + lambda_per d, 350 steps, rendered with the generator's constant noise.
`per_image=False` (default) tunes one generator for the batch (PTI's multi-image mode); `per_image=True`
one copy per image (PTI's single-image mode, the one its paper times) and returns a list.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from latentspaces.interfaces import PerceptualDistance
from latentspaces.losses import ReconstructionLoss, pixel_distance
from latentspaces.metrics.perceptual import BACKBONE_FILES, lpips_available, make_perceptual, torch_hub_checkpoints
from latentspaces.progress import progress_bar
from latentspaces.spaces import W
from latentspaces.spaces.w import sample_spread, w_spread
from optimizers.hybrid import HybridInverter, check_targets
from optimizers.schedules import ProjectorSchedule, projector_lr


PIVOT_STEPS = 450   # W projection steps of "Pivotal Tuning for Latent-based Editing of Real Images" (Sec. 4)
TUNE_STEPS = 350    # generator tuning steps (same)
PIVOTS = ("projector", "inverter")
MULTI_IMAGE = ("step-per-image", "summed")


@dataclass(frozen=True)
class PTIRecipe:
    """What `PTI` runs (module docstring's table). Frozen; `dataclasses.replace` makes a variant."""

    name: str                               # 'released', 'ours', or a variant's name
    pivot_steps: int = PIVOT_STEPS          # W projection steps (first_inv_steps)
    pivot_lr: float = 0.01                  # peak lr of the projection (the projector's initial_learning_rate)
    pivot: str = "projector"                # 'projector' (released) or 'inverter' (HybridInverter on W: ours)
    noise_regularize: float = 1e5           # weight of the noise maps' autocorrelation (pivot 'projector')
    w_samples: int = 600                    # mapped z for the start and the spread (released 600 from RandomState 123)
    tune_steps: int = TUNE_STEPS            # generator tuning steps (max_pti_steps)
    tune_lr: float = 3e-4                   # Adam lr of the tuning (pti_learning_rate)
    lambda_mse: float = 1.0                 # pixel MSE weight (the tuning's; the pivot's under 'inverter')
    lambda_per: float = 1.0                 # perceptual weight (same)
    tune_perceptual: str = "lpips-alex"     # the tuning's distance by name, or 'given': the distance PTI is given
    stop_threshold: Optional[float] = 0.06  # stop an image's tuning once its distance is <= this (None: never)
    locality: bool = False                  # the locality regulariser (use_locality_regularization)
    multi_image: str = "step-per-image"     # several images on one G: 'step-per-image' (released) or 'summed'

    def __post_init__(self):
        if self.pivot not in PIVOTS or self.multi_image not in MULTI_IMAGE:
            raise ValueError(f"pivot must be one of {PIVOTS} and multi_image one of {MULTI_IMAGE}; got "
                             f"{self.pivot!r}, {self.multi_image!r}")
        if self.pivot_steps < 0 or self.tune_steps < 0 or self.w_samples < 2:
            raise ValueError(f"steps must be >= 0 and w_samples >= 2, got {self.pivot_steps}, {self.tune_steps}, "
                             f"{self.w_samples}")

    def record(self) -> dict:
        """The recipe as plain values (what a run records)."""
        return asdict(self)


PTI_RECIPES = {
    "released": PTIRecipe("released"),
    "ours": PTIRecipe("ours", pivot="inverter", w_samples=10_000, tune_perceptual="given", stop_threshold=None,
                      multi_image="summed"),
}


def tuning_distance_name(recipe: PTIRecipe, perceptual: Optional[PerceptualDistance]) -> str:
    """The name of the distance `recipe` tunes with: its `tune_perceptual` where that LPIPS backbone is in the
    torch hub cache; the distance PTI is given ('given', or as a stand-in named so) otherwise."""
    name, given = recipe.tune_perceptual, getattr(perceptual, "name", "none") if perceptual else "none"
    if name == "given":
        return given
    net = name[len("lpips-"):] if name.startswith("lpips-") else None
    if net is not None and not lpips_available(net):
        return f"{given} (stand-in for {name}: {torch_hub_checkpoints() / BACKBONE_FILES[net]} is not on this machine)"
    return name


def noise_regularization(maps: List[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's projector penalty: for each noise map [H, W] and its 2x average-pooled pyramid down to 8 px,
    the squared mean autocorrelation at a one-pixel shift in x and in y, summed ("Analyzing and Improving the
    Image Quality of StyleGAN", Appendix D)."""
    total = torch.zeros(())
    for v in maps:
        v = v[None, None]
        while True:
            total = total + (v * torch.roll(v, 1, dims=3)).mean() ** 2 + (v * torch.roll(v, 1, dims=2)).mean() ** 2
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, 2)
    return total


def sampled_w_start(G, samples: int, seed: int = 123) -> Tuple[torch.Tensor, float]:
    """(mean w [1, w_dim], spread sqrt(sum ||w - mean||^2 / samples)) of `samples` w mapped (psi 1) from
    numpy's RandomState(seed) z: the released projector's start and noise scale."""
    z = np.random.RandomState(seed).randn(samples, G.z_dim)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z).float().to(G.w_avg.device))
    return w.mean(0, keepdim=True), sample_spread(w)


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
    record: dict = field(default_factory=dict)   # the recipe and the distances that ran (stand-ins named)


pivot_lr = projector_lr   # PTI's name for the projector's lr schedule


class PTI:
    """Pivotal Tuning Inversion: a W pivot per image, then the generator's synthesis weights tuned to it
    (module docstring). `run(targets)` returns a `PTIResult` with the tuned generator(s)."""

    def __init__(
        self,
        G,                                      # generator to tune (not modified: tuned copies are returned)
        recipe: Union[str, PTIRecipe] = "released",   # a PTIRecipe, or a name of PTI_RECIPES
        perceptual: Optional[PerceptualDistance] = None,  # d(x, y) -> [N]: the pivot's (and 'given' tuning's)
        per_image: bool = False,                # one tuned generator per image (PTI's single-image mode)
        progress: bool = True,
        tune_perceptual: Optional[PerceptualDistance] = None,  # the tuning's distance (None: the recipe's by name)
        **changes,                              # PTIRecipe fields to change (pivot_steps=30, tune_lr=3e-3, ...)
    ):
        if isinstance(recipe, str):
            if recipe not in PTI_RECIPES:
                raise ValueError(f"unknown PTI recipe {recipe!r}; choose one of {sorted(PTI_RECIPES)}")
            recipe = PTI_RECIPES[recipe]
        self.G, self.recipe = G, replace(recipe, **changes)
        self.perceptual, self.per_image, self.progress = perceptual, per_image, progress
        self.tune_distance, self.tune_distance_name = self._tuning_distance(tune_perceptual)

    def _tuning_distance(self, given: Optional[PerceptualDistance]) -> Tuple[Optional[PerceptualDistance], str]:
        """(the tuning's distance, its name in the record): `given`, else `tuning_distance_name`'s choice."""
        if given is not None:
            return given, getattr(given, "name", type(given).__name__)
        name = tuning_distance_name(self.recipe, self.perceptual)
        if name == self.recipe.tune_perceptual:   # named and on this machine
            return make_perceptual(name, self.G.resolution, self.G.w_avg.device), name
        return self.perceptual, name

    @property
    def reconstruction(self) -> ReconstructionLoss:
        """lambda_mse MSE + lambda_per d: the tuning's image loss (and the 'inverter' pivot's, with the pivot's d)."""
        return ReconstructionLoss(self.tune_distance, lambda_pixel=self.recipe.lambda_mse,
                                  lambda_per=self.recipe.lambda_per)

    def record(self) -> dict:
        """The recipe and the distances that ran, as plain values."""
        pivot = getattr(self.perceptual, "name", "none") if self.perceptual else "none"
        return {**self.recipe.record(), "pivot_distance": pivot if self.perceptual else "pixel MSE (no distance)",
                "tune_distance": self.tune_distance_name}

    def find_pivots(self, targets: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """W pivots [N, w_dim] for targets [N, 3, R, R]: the released projector one image at a time (PTI's
        pivots), or `HybridInverter` on W from w_avg with the projector's schedule (pivot 'inverter')."""
        r = self.recipe
        if r.pivot == "projector":
            return torch.cat([self.project(targets[i:i + 1], seed + i) for i in range(targets.shape[0])])
        inverter = HybridInverter(W(self.G), steps=r.pivot_steps, lr=r.pivot_lr, lambda_per=r.lambda_per,
                                  lambda_reg=0.0, lambda_mse=r.lambda_mse, perceptual=self.perceptual,
                                  progress=self.progress,
                                  schedule=ProjectorSchedule(w_spread(self.G, r.w_samples), seed=seed))
        return inverter.invert(targets, init="mean").code.w

    def project(self, target: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The released projector's pivot w [1, w_dim] of one target [1, 3, R, R]: w and a copy of G's noise maps
        (drawn anew, renormalised after every step, then dropped) optimised by Adam (0.9, 0.999) on the
        distance + noise_regularize x `noise_regularization`; the distance is pixel MSE without one."""
        r = self.recipe
        G = copy.deepcopy(self.G).eval().requires_grad_(False)
        start, spread = sampled_w_start(G, r.w_samples)
        gen = torch.Generator().manual_seed(seed)
        maps = [buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")]
        with torch.no_grad():
            for buf in maps:
                buf.copy_(torch.randn(buf.shape, generator=gen))
        for buf in maps:
            buf.requires_grad_(True)
        w = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([w, *maps], lr=r.pivot_lr, betas=(0.9, 0.999))
        distance: Callable = self.perceptual or pixel_distance
        for step in progress_bar(range(r.pivot_steps), desc="PTI pivot", disable=not self.progress, leave=False):
            t = step / r.pivot_steps
            for group in opt.param_groups:
                group["lr"] = projector_lr(step, r.pivot_steps, r.pivot_lr)
            scale = spread * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
            noisy = w + torch.randn(w.shape, generator=gen).to(w.device) * scale
            image = G.synthesis(G.broadcast(noisy), noise_mode="const")
            loss = distance(image, target).sum() + r.noise_regularize * noise_regularization(maps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for buf in maps:
                    buf -= buf.mean()
                    buf *= buf.square().mean().rsqrt()
        return w.detach()

    def tune(self, targets: torch.Tensor, pivots: torch.Tensor, seed: int = 0):
        """A tuned copy of G for targets [N, 3, R, R] and their pivots [N, w_dim]: (G', steps run, history).

        One image: the stop rule is checked before each step (the released single-image coach). Several:
        'step-per-image' takes one Adam step per image per iteration and never stops early (the released
        multi-image coach); 'summed' one step on the summed loss, stopping once every image is under the
        threshold."""
        r, G0 = self.recipe, self.G
        G1 = copy.deepcopy(G0).train(False)
        G1.requires_grad_(False)
        G1.synthesis.requires_grad_(True)
        opt = torch.optim.Adam([p for p in G1.synthesis.parameters() if p.requires_grad], lr=r.tune_lr)
        ws = G1.broadcast(pivots)
        gen = torch.Generator().manual_seed(seed + 1)
        history = {"loss": [], "perceptual": []}
        groups = [slice(i, i + 1) for i in range(len(ws))] if r.multi_image == "step-per-image" else [slice(None)]
        steps_run = 0
        for step in progress_bar(range(r.tune_steps), desc="PTI tune", disable=not self.progress, leave=False):
            stop = False
            for part in groups:
                images = G1.synthesis(ws[part], noise_mode="const")
                terms = self.reconstruction.per_image(images, targets[part])
                loss, per = terms["loss"], terms.get("perceptual")
                history["loss"].append(loss.detach().cpu())
                if per is not None:
                    history["perceptual"].append(per.detach().cpu())
                    stoppable = len(groups) == 1 and r.stop_threshold is not None
                    if stoppable and bool((per <= r.stop_threshold).all()):
                        stop = True
                        break
                total = loss.sum()
                if r.locality:
                    total = total + self._locality_loss(G0, G1, pivots[part], gen)
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
            if stop:
                break
            steps_run = step + 1
        G1.requires_grad_(False)
        return G1.eval(), steps_run, {k: torch.stack(v) if len(groups) == 1 else torch.cat(v)
                                      for k, v in history.items() if v}

    def _locality_loss(self, G0, G1, pivots: torch.Tensor, gen: torch.Generator, alpha: float = 30.0,
                       psi: float = 0.5) -> torch.Tensor:
        """The released locality regulariser: w_r = w_p + alpha (w_z - w_p) / ||w_z - w_p|| with the norm over the
        whole [num_ws, w_dim] code (each row moves alpha / sqrt(num_ws)), w_z mapped from z at psi 0.5; G0 and
        G1 render w_r with noise 'none'; 0.1 MSE + 0.1 d."""
        z = torch.randn(pivots.shape[0], G0.z_dim, generator=gen).to(pivots.device)
        with torch.no_grad():
            w_p = G0.broadcast(pivots)
            d = G0.broadcast(G0.truncate(G0.mapping(z), psi)) - w_p
            w_r = w_p + alpha * d / d.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None]
            ref = G0.synthesis(w_r, noise_mode="none")
        img = G1.synthesis(w_r, noise_mode="none")
        return ReconstructionLoss(self.tune_distance, lambda_pixel=0.1, lambda_per=0.1).per_image(img, ref)["loss"].sum()
    def run(self, targets: torch.Tensor, seed: int = 0) -> PTIResult:
        """Pivot, then tune: one generator for the batch, or one per image with per_image=True."""
        targets = check_targets(targets, self.G)   # the inverter's checks: shape, dtype, range, [0, 1] images
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
        return PTIResult(tuned, pivots, images, pivot_images, time.perf_counter() - t0, t_pivot, steps, history,
                         self.record())
