"""The losses every optimizer and trainer shares: reconstruction, code anchors, and the GAN terms.

Reconstruction ("Revisiting Latent Space of GAN Inversion", Eq. 1; the same form in PTI, e4e, SDIC,
HFGI, GradStyle and ReGANIE with their own weights):

    L(y, x) = lambda_pixel * pixel(y, x) + lambda_per * P(y, x)

    pixel:  mean over channels and pixels of (y - x)^2 ('l2') or |y - x| ('l1');
    P:      a `PerceptualDistance` (LPIPS, or the default model's D-features distance), or none.

`ReconstructionLoss.per_image` gives each image's terms [N] (an inversion sums them: image i's
optimization is independent of the batch); `ReconstructionLoss.batch` gives the batch means (a
trainer's scalars). The code anchor `anchor_penalty` is the regulariser mean((f - f0)^2) of the same
paper's Eq. 2.

GAN terms ("Analyzing and Improving the Image Quality of StyleGAN", Karras et al. 2020): the
non-saturating generator loss, the logistic discriminator loss and the lazy R1 penalty on reals
("Which Training Methods for GANs do actually Converge?", Mescheder et al. 2018, Eq. 9; lazy
regularization: StyleGAN2 Sec. 3.1).

Every difference-based loss of the optimizers and trainers is computed here: a test reads their source
and fails on a hand-written `(y - x).square()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional

import torch
import torch.nn.functional as F

from latentspaces.interfaces import PerceptualDistance

PIXEL_KINDS = ("l2", "l1")
R1_INTERVAL = 16  # D steps between R1 penalties (lazy regularization)


# ---------------------------------------------------------------------------------- distances
def pixel_distance(y: torch.Tensor, x: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Per-sample mean of (y - x)^2 ('l2') or |y - x| ('l1') over every non-batch dimension: [N]."""
    if y.shape != x.shape:
        raise ValueError(f"pixel_distance compares tensors of one shape, got {list(y.shape)} and {list(x.shape)}")
    diff = y - x
    if kind == "l2":
        return diff.square().flatten(1).mean(1)
    if kind == "l1":
        return diff.abs().flatten(1).mean(1)
    raise ValueError(f"pixel kind must be one of {PIXEL_KINDS}, got {kind!r}")


def mean_squared_error(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """mean((y - x)^2) over every element: a scalar (held-out MSE, code and feature distances)."""
    return (y - x).square().mean()


def mean_absolute_error(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """mean(|y - x|) over every element: a scalar (L1 reconstructions, feature alignment)."""
    return (y - x).abs().mean()


def anchor_penalty(fields: Mapping[str, torch.Tensor], anchors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """sum over the anchored fields of the per-sample mean((f - f0)^2): [N] ("Revisiting Latent Space of GAN
    Inversion", Eq. 2's regulariser on the F encoder's f0). `anchors` names the fields; none: 0."""
    return sum(pixel_distance(fields[k], f0) for k, f0 in anchors.items())


@dataclass(frozen=True)
class ReconstructionLoss:
    """lambda_pixel * pixel(y, x) + lambda_per * P(y, x) for images y, x [N, 3, R, R] in [-1, 1]."""

    perceptual: Optional[PerceptualDistance] = None   # d(y, x) -> [N]; None: no perceptual term
    lambda_pixel: float = 1.0                        # weight of the pixel term, >= 0
    lambda_per: float = 1.0                          # weight of the perceptual term (0: not computed)
    pixel: str = "l2"                                # 'l2' (mean squared) or 'l1' (mean absolute)

    def __post_init__(self):
        if self.pixel not in PIXEL_KINDS:
            raise ValueError(f"pixel must be one of {PIXEL_KINDS}, got {self.pixel!r}")
        if self.lambda_pixel < 0 or self.lambda_per < 0:
            raise ValueError(f"loss weights must be >= 0, got lambda_pixel={self.lambda_pixel}, "
                             f"lambda_per={self.lambda_per}")

    @property
    def uses_perceptual(self) -> bool:
        return self.perceptual is not None and self.lambda_per != 0

    def per_image(self, y: torch.Tensor, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{'pixel': [N], 'perceptual': [N] (when used), 'loss': [N] their weighted sum}."""
        terms = {"pixel": pixel_distance(y, x, self.pixel)}
        loss = self.lambda_pixel * terms["pixel"]
        if self.uses_perceptual:
            terms["perceptual"] = self.perceptual(y, x).reshape(-1)
            loss = loss + self.lambda_per * terms["perceptual"]
        terms["loss"] = loss
        return terms

    def batch(self, y: torch.Tensor, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Batch means, scalars: {'pixel', 'perceptual' (0 when unused), 'loss' their weighted sum}."""
        pixel = mean_squared_error(y, x) if self.pixel == "l2" else mean_absolute_error(y, x)
        per = self.perceptual(y, x).mean() if self.uses_perceptual else torch.zeros((), device=y.device)
        return {"pixel": pixel, "perceptual": per, "loss": self.lambda_pixel * pixel + self.lambda_per * per}


# ---------------------------------------------------------------------------------- GAN terms
def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss, a scalar: mean softplus(-D(fake)); fake_logits [N] or [N, 1]."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Logistic D loss, a scalar: mean softplus(D(fake)) + mean softplus(-D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1, a scalar: mean over the batch of ||grad_x D(x)||^2 at the reals x [N, ...] (images or codes;
    graph kept for backpropagation into D)."""
    real_ = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real_).sum(), real_, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def lazy_r1_term(r1: torch.Tensor, gamma: float, interval: int = R1_INTERVAL) -> torch.Tensor:
    """The R1 term added to the D loss on the steps that compute it: r1 * gamma / 2 * interval."""
    return r1 * (gamma / 2) * interval


def default_r1_gamma(resolution: int, batch: int) -> float:
    """StyleGAN2's R1 weight heuristic ('auto' config): 0.0002 R^2 / batch."""
    return 0.0002 * resolution ** 2 / batch
