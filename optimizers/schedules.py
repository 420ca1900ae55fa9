"""Step schedules for `HybridInverter`: the learning rate and a perturbation of the code at each step.

`ConstantSchedule` (the default) keeps the inverter's lr and shows the loss the code itself: the recipe
of "Revisiting Latent Space of GAN Inversion". `ProjectorSchedule` is the projector of "Analyzing and
Improving the Image Quality of StyleGAN" (Sec. 5 / Appendix D) as PTI ("Pivotal Tuning for Latent-based
Editing of Real Images", Sec. 3.1) runs it for its pivot:

    lr(t)    = lr * min(1, t / rampup) * (1/2 - 1/2 cos(pi * min(1, (1 - t) / rampdown))),  t = step / steps
    code(t)  = code + noise_step * std_w * noise_scale * max(0, 1 - t / noise_ramp)^2 (loss side only)

with noise_step ~ N(0, I) drawn from `seed`, one draw per step in step order (so a resumed run sees the
draws an uninterrupted one would).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Protocol, runtime_checkable

import torch

from latentspaces.spaces import Code


@runtime_checkable
class InversionSchedule(Protocol):
    """What `HybridInverter` asks at every step; its repr is part of a checkpoint's fingerprint."""

    def lr(self, step: int, steps: int, base_lr: float) -> float:
        """The learning rate of step `step` (0-based) of `steps`."""

    def perturb(self, step: int, steps: int, code: Code) -> Code:
        """The code the loss sees at this step (the optimized code itself, or a noisy view of it)."""


@dataclass(frozen=True)
class ConstantSchedule:
    """The inverter's lr at every step; the loss sees the code unchanged."""

    def lr(self, step: int, steps: int, base_lr: float) -> float:
        return base_lr

    def perturb(self, step: int, steps: int, code: Code) -> Code:
        return code


def projector_lr(step: int, steps: int, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """The projector's schedule: linear warm-up over `rampup`, cosine ramp-down over the last `rampdown`."""
    t = step / max(steps, 1)
    down = min(1.0, (1.0 - t) / rampdown)
    down = 0.5 - 0.5 * math.cos(down * math.pi)
    return lr * down * min(1.0, t / rampup)


@dataclass
class ProjectorSchedule:
    """StyleGAN2's projector schedule (PTI's pivot): ramped lr and ramped Gaussian noise on one code field."""

    code_std: float                 # std of the code distribution (PTI: std(W) over 10,000 mapped z's)
    seed: int = 0                   # seed of the noise draws
    code_field: str = "w"           # the code field the noise is added to
    rampup: float = 0.05            # share of the steps with a linear lr warm-up
    rampdown: float = 0.25          # share of the steps with a cosine lr ramp-down, at the end
    noise_scale: float = 0.05       # initial noise std in units of code_std
    noise_ramp: float = 0.75        # share of the steps over which the noise decays (quadratically) to 0
    _draws: List[torch.Tensor] = field(default_factory=list, init=False, repr=False, compare=False)

    def lr(self, step: int, steps: int, base_lr: float) -> float:
        return projector_lr(step, steps, base_lr, self.rampup, self.rampdown)

    def perturb(self, step: int, steps: int, code: Code) -> Code:
        value = code[self.code_field]
        if not self._draws or self._draws[0].shape != value.shape or len(self._draws) != steps:
            gen = torch.Generator().manual_seed(self.seed)
            self._draws = [torch.randn(*value.shape, generator=gen) for _ in range(steps)]
        t = step / max(steps, 1)
        noise = self._draws[step].to(value.device) * self.code_std * self.noise_scale * max(0.0, 1.0 - t / self.noise_ramp) ** 2
        return Code(**{**dict(code.items()), self.code_field: value + noise})
