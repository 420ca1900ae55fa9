"""HybridInverter: encoder-initialized, projected optimization into any latent space.

"Revisiting Latent Space of GAN Inversion", Eqs. 1-5:

    L_i = lambda_mse MSE(x_i, G(c_i)) + lambda_per P(x_i, G(c_i)) + lambda_reg mean((f_i - f0_i)^2)
          + the space's own penalties (e.g. P_N),
    total = sum_i L_i  (summed, not averaged: image i's optimization is independent of the batch)

Adam (lr 0.01, 1200 steps in the paper; a `schedule` may vary the lr and show the loss a perturbed code,
as PTI's pivot does: optimizers/schedules.py) on the space's code tensors, then `space.project_`
after every step (each field onto its manifold: hypersphere retraction for Z-type codes). f0 is the
initial value of the space's `base_fields` (the F encoder's output f0 in F spaces). The run checks every step that each image's loss is finite and
has not blown up, and can checkpoint and resume to the same result.

Speed (measured side by side by `python -m experiments.benchmarks.bench_inversion_step`): the step's
layers are already fast by default (channels-last convolutions on CPU, folded epilogues:
`latentspaces.generator.ops.layer_options`, 1.33-1.36x on the 2-core CPU, equal to rounding). Switches:
- `compile`: the per-step loss (synthesis, perceptual term, losses; forward and backward) through
  `torch.compile`. Off by default: on the 2-core CPU it measured 0.95-1.06x of eager after a 17-46 s
  compile, so it never pays for itself there; on a GPU try `compile="reduce-overhead"` (CUDA graphs)
  and measure. Results agree with eager to float rounding, amplified by the optimization (the
  benchmark prints the image difference after 100 steps; tests/test_hybrid_inverter.py bounds it).
- `autocast`: 'bfloat16' (or 'float16' on CUDA) runs the loss in reduced precision; codes, Adam and
  the returned images stay float32. Not equal to eager: its effect on the final MSE after the full
  schedule is measured in BENCHMARKS.md before anyone should use it for a table.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Union

import torch

from latentspaces.fingerprints import digest
from latentspaces.interfaces import CodeInitializer, IdentitySimilarity, PerceptualDistance
from latentspaces.losses import ReconstructionLoss, anchor_penalty
from latentspaces.metrics.perceptual import make_perceptual
from latentspaces.progress import progress_bar
from latentspaces.spaces import Code, LatentSpace
from latentspaces.storage import atomic_torch_save
from optimizers.recipes import INITS, PAPER, InversionRecipe, check_inversion_numbers
from optimizers.schedules import ConstantSchedule, InversionSchedule

InitSpec = Union[None, str, Code]
TARGET_TOLERANCE = 0.1   # targets may reach [-1.1, 1.1]: the overshoot of resampling an image in [-1, 1]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class InversionDiverged(RuntimeError):
    """A loss became NaN / inf or grew past `divergence_factor` times its start: which images, which step."""

    def __init__(self, message: str, step: int, images: List[int], history: Dict[str, torch.Tensor]):
        super().__init__(message)
        self.step, self.images, self.history = step, images, history


@dataclass
class InversionResult:
    """code: the optimized Code; images: G(code) [N, 3, R, R]; history: {term: [steps, N]} per step and image.

    history['identity'] holds NaN on steps where identity was not evaluated. space_options: the options the
    space rendered the codes with (`LatentSpace.options`, a recipe's truncation; {} for none): rebuild the
    space with `build_space(result.space, G, **result.space_options)` to render the codes again.
    """

    code: Code
    images: torch.Tensor
    history: Dict[str, torch.Tensor]
    seconds: float
    space: str
    steps: int
    meta: dict = field(default_factory=dict)
    space_options: dict = field(default_factory=dict)


def check_targets(targets: torch.Tensor, G) -> torch.Tensor:
    """Targets of generator G as float32 on its device, or ValueError saying what is wrong and how to fix it.

    Accepted: a real floating-point tensor [N, 3, R, R], N >= 1, with finite values in
    [-1 - TARGET_TOLERANCE, 1 + TARGET_TOLERANCE] (the tolerance admits the overshoot of bicubic or
    Lanczos resampling of an image in [-1, 1]), and at least one value below 0: a batch with no
    pixel darker than mid-gray is almost surely an image in [0, 1].
    """
    R = G.resolution
    load = "; read image files with latentspaces.images.load_images"
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a tensor [N, 3, {R}, {R}] in [-1, 1], got a {type(targets).__name__}"
                         f"{load}")
    if targets.device.type == "meta" or targets.layout != torch.strided:
        raise ValueError(f"targets must be a dense tensor holding data, got a {targets.layout} tensor on "
                         f"{targets.device}")
    if targets.dtype.is_complex or not targets.dtype.is_floating_point:
        fix = (" (uint8 images in [0, 255]? convert with x.float() / 127.5 - 1, or latentspaces.images.from_uint8)"
               if targets.dtype == torch.uint8 else "")
        raise ValueError(f"targets must be a real floating-point tensor in [-1, 1], got {targets.dtype}{fix}")
    if targets.ndim != 4 or targets.shape[1:] != (3, R, R):
        raise ValueError(f"targets must be a tensor [N, 3, {R}, {R}] in [-1, 1], got {tuple(targets.shape)}{load}")
    if targets.shape[0] == 0:
        raise ValueError(f"targets is an empty batch [0, 3, {R}, {R}]; give at least one image")
    if not torch.isfinite(targets).all():
        raise ValueError("targets contain NaN or inf")
    lo, hi = targets.min().item(), targets.max().item()
    if lo < -1 - TARGET_TOLERANCE or hi > 1 + TARGET_TOLERANCE:
        raise ValueError(f"targets must be in [-1, 1] (tolerance {TARGET_TOLERANCE:g} for resampling), got values "
                         f"in [{lo:.3g}, {hi:.3g}] (images in [0, 255]? convert with x / 127.5 - 1)")
    # Images in [0, 1] given as [-1, 1]: no pixel clearly darker than mid-gray although the values span
    # half the range (a uniform image, all white included, is a valid target; so is a [0, 1] image's
    # resampling overshoot of a few pixels at -0.01).
    flat = targets.detach().flatten(1)
    dark = (flat < -0.05).float().mean(1)
    spread = flat.amax(1) - flat.amin(1)
    if bool(((dark < 0.001) & (spread > 0.5)).all()):
        raise ValueError(f"targets have no value below 0 (under 0.1% of each image's pixels below -0.05; range "
                         f"[{lo:.3g}, {hi:.3g}]): images in [0, 1]? convert with x * 2 - 1 (targets are in "
                         "[-1, 1], -1 black, 1 white)")
    return targets.detach().to(G.w_avg.device, torch.float32)


class HybridInverter:
    """One optimizer for every latent space: Adam on a space's code, projected after each step.

        inverter = HybridInverter.from_recipe(space, PAPER, perceptual, encoder)   # or HybridInverter(space, ...)
        result = inverter.invert(targets)          # targets [N, 3, R, R] in [-1, 1]
        result.code, result.images, result.history

    The loss per image (module docstring): lambda_mse MSE + lambda_per P + lambda_reg mean((f - f0)^2), plus
    the space's own penalty; images are independent (a batch equals single-image runs). `invert` can
    checkpoint and resume, and stops on NaN or divergence naming the images and the step.
    """

    def __init__(
        self,
        space: LatentSpace,                    # the latent space to invert into
        steps: int = PAPER.steps,              # optimizer steps, 0 .. MAX_STEPS (the paper recipe's by default)
        lr: float = PAPER.lr,                  # Adam learning rate, > 0
        lambda_per: float = PAPER.lambda_per,  # weight of the perceptual distance, >= 0
        lambda_reg: float = PAPER.lambda_reg,  # weight of mean((f - f0)^2) for F spaces' base codes, >= 0
        lambda_mse: float = PAPER.lambda_mse,  # weight of the pixel MSE, >= 0
        perceptual: Optional[PerceptualDistance] = None,  # d(x, y) -> [N]; None: no perceptual term
        encoder: Optional[CodeInitializer] = None,        # init_code(space, targets) -> Code
        identity: Optional[IdentitySimilarity] = None,    # sim(x, y) -> [N], recorded every `identity_every` steps
        identity_every: int = 0,               # 0: never
        divergence_factor: float = 1e3,        # stop when a loss exceeds this times its initial value
        progress: bool = True,                 # tqdm progress bar
        compile: Union[bool, str] = False,     # torch.compile the step's loss: True / a mode in COMPILE_MODES
        autocast: Optional[str] = None,        # None (float32) or 'bfloat16' / 'float16' for the loss
        schedule: Optional[InversionSchedule] = None,  # per-step lr and code perturbation; None: constant lr
        init: InitSpec = None,                 # invert()'s start when it is given none (see `initial_code`)
    ):
        check_inversion_numbers(steps, lr, lambda_mse, lambda_per, lambda_reg)
        if not (math.isfinite(divergence_factor) and divergence_factor > 1):
            raise ValueError(f"divergence_factor must be a finite number > 1 (the stop at that many times the start "
                             f"loss), got {divergence_factor!r}")
        if not (isinstance(compile, bool) or compile in COMPILE_MODES):
            raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got {compile!r}")
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be None or one of {sorted(AUTOCAST_DTYPES)}, got {autocast!r}")
        if autocast == "float16" and space.device.type != "cuda":
            raise ValueError("autocast='float16' needs a CUDA device; on a CPU use 'bfloat16' or None")
        self.compile, self.autocast = compile, autocast
        self._compiled: Optional[Callable] = None
        self.space, self.steps, self.lr = space, steps, lr
        self.lambda_per, self.lambda_reg, self.lambda_mse = lambda_per, lambda_reg, lambda_mse
        self.perceptual, self.encoder = perceptual, encoder
        self.identity, self.identity_every = identity, identity_every
        self.divergence_factor, self.progress = divergence_factor, progress
        self.schedule: InversionSchedule = ConstantSchedule() if schedule is None else schedule
        if not (init is None or isinstance(init, Code) or init in INITS):
            raise ValueError(f"init must be None, a Code or one of {INITS}, got {init!r}")
        self.init = init

    @classmethod
    def from_recipe(
        cls,
        space: LatentSpace,
        recipe: InversionRecipe,               # steps, lr, loss weights, start (optimizers.recipes)
        perceptual: Optional[PerceptualDistance] = None,  # None: the distance recipe.perceptual names, if weighted
        encoder: Optional[CodeInitializer] = None,        # the start of recipe.init == 'encoder' (None: the mean)
        **options,                             # identity, progress, compile, autocast, ... as in the constructor
    ) -> "HybridInverter":
        """An inverter running `recipe` in `space`: the same numbers wherever the recipe is used.

        With init 'encoder' and no encoder (Z and Z+ have none in "Revisiting Latent Space of GAN
        Inversion") the start is the space's mean code, and the anchor term is off (it anchors to an
        encoder's f0). The perceptual distance is made by name (`make_perceptual`) only when the loss
        weighs it; a distance passed in is used as given. A recipe that truncates this space (the paper's
        F/Z+, F/Z and W, as released) needs the space built with its truncation,
        `build_space(name, G, **recipe.space_options(name))`; a space truncated otherwise is refused.
        """
        wanted = recipe.space_options(space.name)
        if space.options() != wanted:
            raise ValueError(
                f"recipe {recipe.name!r} renders {space.name} with {wanted or 'no truncation'}, but the space has "
                f"{space.options() or 'no truncation'}: build it with build_space({space.name!r}, G, "
                f"**recipe.space_options({space.name!r})), or use recipe.replace(truncated_spaces=()) for none")
        if perceptual is None and recipe.lambda_per > 0:
            perceptual = make_perceptual(recipe.perceptual, space.G.resolution, space.device)
        use_encoder = recipe.init == "encoder" and encoder is not None
        run = recipe.effective(perceptual=perceptual is not None, encoder=use_encoder)
        return cls(space, steps=run.steps, lr=run.lr, lambda_mse=run.lambda_mse, lambda_per=run.lambda_per,
                   lambda_reg=run.lambda_reg, perceptual=perceptual, encoder=encoder if use_encoder else None,
                   init="encoder" if use_encoder else ("mean" if recipe.init == "encoder" else recipe.init),
                   **options)

    @property
    def reconstruction(self) -> ReconstructionLoss:
        """The image term of Eq. 1 from the current weights and perceptual distance."""
        return ReconstructionLoss(self.perceptual, lambda_pixel=self.lambda_mse, lambda_per=self.lambda_per)

    # ------------------------------------------------------------------ setup
    def _check_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """`check_targets` for this space's generator, on the space's device."""
        return check_targets(targets, self.space.G).to(self.space.device)

    def initial_code(self, targets: torch.Tensor, init: InitSpec = None, seed: int = 0) -> Code:
        """'encoder' (default when an encoder is set), 'mean' (w_avg or its counterpart), 'random' (seeded,
        the same code for every image), or a given Code."""
        n = targets.shape[0]
        if init is None:
            init = self.init
        if init is None:
            init = "encoder" if self.encoder is not None else "mean"
        if isinstance(init, Code):
            if len(init) != n:
                raise ValueError(f"init code has {len(init)} codes for {n} targets")
            return init.detach().clone().to(self.space.device)
        if init == "encoder":
            if self.encoder is None:
                raise ValueError("init='encoder' needs HybridInverter(..., encoder=...)")
            with torch.no_grad():
                return self.encoder.init_code(self.space, targets).detach()
        if init == "mean":
            return self.space.mean(n)
        if init == "random":
            one = self.space.random(1, seed=seed)
            return Code(**{k: v.expand(n, *v.shape[1:]).clone() for k, v in one.items()})
        raise ValueError(f"init must be 'encoder', 'mean', 'random' or a Code, got {init!r}")

    def losses(self, code: Code, targets: torch.Tensor, f0: Dict[str, torch.Tensor]) -> tuple:
        """(terms, images): per-image terms {name: [N]} ('loss' is their weighted sum; the others are
        unweighted, except the space's penalties, which carry their own weights) and G(code)."""
        images = self.space.synthesize(code)
        recon = self.reconstruction.per_image(images, targets)
        terms = {"mse": recon["pixel"]}
        if "perceptual" in recon:
            terms["perceptual"] = recon["perceptual"]
        loss = recon["loss"]
        if f0 and self.lambda_reg:
            terms["reg"] = anchor_penalty(code, f0)
            loss = loss + self.lambda_reg * terms["reg"]
        for name, value in self.space.penalty(code).items():
            terms[name] = value
            loss = loss + value
        terms["loss"] = loss
        return terms, images

    def step_losses(self, code: Code, targets: torch.Tensor, f0: Dict[str, torch.Tensor]) -> tuple:
        """`losses` as the inversion loop runs it: compiled and / or under autocast when asked, terms in float32."""
        fn = self.losses
        if self.compile:
            if self._compiled is None:
                mode = None if self.compile is True else self.compile
                # dynamic=False: one graph per batch shape; an inversion keeps its shape for every step.
                self._compiled = torch.compile(self.losses, mode=mode, dynamic=False)
            fn = self._compiled
        if self.autocast is None:
            return fn(code, targets, f0)
        with torch.autocast(self.space.device.type, dtype=AUTOCAST_DTYPES[self.autocast]):
            terms, images = fn(code, targets, f0)
        return {k: v.float() for k, v in terms.items()}, images.float()

    def _diagnose(self, code: Code, images: torch.Tensor, terms: Dict[str, torch.Tensor], idx: List[int]) -> str:
        """What to blame for a diverged loss: the generator, the code, one loss term, or the step size."""
        with torch.no_grad():
            reference = self.space.synthesize(self.space.mean(1))
        if not torch.isfinite(reference).all():
            return ("the generator itself renders NaN/inf for the mean code of this space: the checkpoint is broken or "
                    "was read wrongly (check the file, its format and its dtype); a lower lr will not help")
        if not torch.isfinite(images[idx].detach()).all():
            codes_finite = all(torch.isfinite(t[idx].detach()).all() for t in code.tensors())
            return ("the generator renders NaN/inf for these images' codes" + (
                    " (the codes are finite: they left the region the generator handles; lower lr)" if codes_finite
                    else " (the codes themselves became NaN/inf; lower lr)"))
        bad = [k for k, v in terms.items() if k != "loss" and not torch.isfinite(v.detach()[idx]).all()]
        if bad:
            return (f"the rendered images are finite but the term(s) {bad} are NaN/inf: check that loss "
                    "(the perceptual distance, the identity model, the space's penalty)")
        return "the loss grew past divergence_factor times its start: lower lr or check the targets"

    # ------------------------------------------------------------------ checkpoints
    def _fingerprint(self, targets: torch.Tensor, code: Code) -> str:
        """The checkpoint's key: targets, start codes, space and settings (a reduced-precision run is another
        run; a compiled one is not: equal to rounding)."""
        settings = repr((self.space, self.steps, self.lr, self.lambda_per, self.lambda_reg, self.lambda_mse))
        extra = [] if self.autocast is None else [self.autocast]
        if not isinstance(self.schedule, ConstantSchedule):   # old checkpoints (constant lr) keep their key
            extra.append(repr(self.schedule))
        return digest(targets, *(t for _, t in code.items()), settings, *extra)

    # ------------------------------------------------------------------ main loop
    def invert(
        self,
        targets: torch.Tensor,
        seed: int = 0,
        init: InitSpec = None,
        checkpoint: Optional[str] = None,
        checkpoint_every: int = 100,
        on_step: Optional[Callable[[int, Dict[str, torch.Tensor]], None]] = None,
    ) -> InversionResult:
        """Invert targets [N, 3, R, R] in [-1, 1]. With `checkpoint`, state is saved every `checkpoint_every`
        steps and a later call with the same targets, settings and path resumes from it.

        on_step(steps done, loss terms): called after every optimizer step with the step's terms (detached,
        [N] each: 'loss', 'mse', ...), for a caller's live progress; an exception it raises stops the
        inversion and propagates (the browser editor's cancel); that step's checkpoint is written before the call."""
        targets = self._check_targets(targets)
        n, space = targets.shape[0], self.space
        code = self.initial_code(targets, init, seed).detach().clone()  # fresh leaf tensors to optimize
        space.project_(code)
        f0 = {k: code[k].detach().clone() for k in space.base_fields}
        fingerprint = self._fingerprint(targets, code)
        params = space.parameters(code)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=self.lr)
        history: Dict[str, List[torch.Tensor]] = {}
        start, elapsed = 0, 0.0
        first_loss: Optional[torch.Tensor] = None

        if checkpoint and os.path.isfile(checkpoint):
            state = torch.load(checkpoint, map_location=space.device, weights_only=True)
            if state["fingerprint"] != fingerprint:
                raise ValueError(f"checkpoint {checkpoint} belongs to another run (different targets, init or "
                                 "settings); delete it or choose another path")
            with torch.no_grad():
                for k, v in state["code"].items():
                    code[k].copy_(v)
            opt.load_state_dict(state["optimizer"])
            history = {k: list(v.unbind(0)) for k, v in state["history"].items()}
            start, elapsed, first_loss = int(state["step"]), float(state["seconds"]), state["first_loss"]

        t0 = time.perf_counter()
        bar = progress_bar(range(start, self.steps), initial=start, total=self.steps, desc=f"invert {space.name}",
                   disable=not self.progress, leave=False)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = self.schedule.lr(step, self.steps, self.lr)
            shown = self.schedule.perturb(step, self.steps, code)
            terms, images = self.step_losses(shown, targets, f0)
            loss = terms["loss"]
            loss_d = loss.detach()
            if first_loss is None:
                first_loss = loss_d.clone()
            bad = ~torch.isfinite(loss_d) | (loss_d > self.divergence_factor * first_loss.clamp_min(1e-8))
            for k, v in terms.items():
                history.setdefault(k, []).append(v.detach().cpu())
            if self.identity is not None and self.identity_every and step % self.identity_every == 0:
                with torch.no_grad():
                    ident = self.identity(images.detach(), targets).reshape(-1).cpu()
            else:
                ident = torch.full((n,), math.nan)
            if self.identity is not None and self.identity_every:
                history.setdefault("identity", []).append(ident)
            if bad.any():
                idx = bad.nonzero().flatten().tolist()
                hist = {k: torch.stack(v) for k, v in history.items()}
                raise InversionDiverged(
                    f"{space.name} inversion diverged at step {step} for images {idx}: loss "
                    f"{[round(float(loss_d[i]), 4) for i in idx]} (start {[round(float(first_loss[i]), 4) for i in idx]}); "
                    + self._diagnose(shown, images, terms, idx), step, idx, hist)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            space.project_(code)
            if self.progress:
                bar.set_postfix(loss=f"{loss.mean().item():.4f}", mse=f"{terms['mse'].mean().item():.4f}")
            done = step + 1
            if checkpoint and (done % checkpoint_every == 0 or done == self.steps):
                atomic_torch_save({
                    "fingerprint": fingerprint, "step": done, "seconds": elapsed + time.perf_counter() - t0,
                    "code": code.state_dict(), "optimizer": opt.state_dict(), "first_loss": first_loss,
                    "history": {k: torch.stack(v) for k, v in history.items()},
                }, checkpoint)  # atomic: a killed run never leaves a half-written checkpoint
            if on_step is not None:
                on_step(done, {k: v.detach() for k, v in terms.items()})
        bar.close()
        with torch.no_grad():
            final = space.synthesize(code)
        code = code.detach()
        for t in code.tensors():
            t.requires_grad_(False)
        hist = {k: torch.stack(v) if v else torch.empty(0, n) for k, v in history.items()}
        return InversionResult(code=code, images=final, history=hist, seconds=elapsed + time.perf_counter() - t0,
                               space=space.name, steps=self.steps, space_options=space.options())
