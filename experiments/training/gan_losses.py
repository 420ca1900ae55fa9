"""The GAN loss pieces of "Analyzing and Improving the Image Quality of StyleGAN" (Karras et al. 2020),
shared by the StyleGAN2 trainer and the heads' trainers (ReGANIE, and HFGI and GradStyle with --lambda-adv): the non-saturating generator loss, the
logistic discriminator loss and the lazy R1 penalty on reals ("Which Training Methods for GANs do
actually Converge?", Mescheder et al. 2018, Eq. 9; lazy regularization: StyleGAN2 Sec. 3.1).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F

R1_INTERVAL = 16  # D steps between R1 penalties (lazy regularization)


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss, a scalar: mean softplus(-D(fake)); fake_logits [N] or [N, 1]."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Logistic D loss, a scalar: mean softplus(D(fake)) + mean softplus(-D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1, a scalar: mean over the batch of ||grad_x D(x)||^2 at the reals x [N, C, H, W] (graph kept for
    backpropagation into D)."""
    real_ = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real_).sum(), real_, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean()


def lazy_r1_term(r1: torch.Tensor, gamma: float, interval: int = R1_INTERVAL) -> torch.Tensor:
    """The R1 term added to the D loss on the steps that compute it: r1 * gamma / 2 * interval."""
    return r1 * (gamma / 2) * interval


def default_r1_gamma(resolution: int, batch: int) -> float:
    """StyleGAN2's R1 weight heuristic ('auto' config): 0.0002 R^2 / batch."""
    return 0.0002 * resolution ** 2 / batch


def discriminator_step(D: torch.nn.Module, opt: torch.optim.Optimizer, fake: torch.Tensor, real: torch.Tensor,
                       step: int, gamma: float, average_gradients: Callable[[Iterable[torch.nn.Parameter]], None]
                       ) -> torch.Tensor:
    """One update of D beside a trained head: the logistic loss on fake (detached) vs real [N, 3, R, R], plus
    the lazy R1 term on the reals every R1_INTERVAL steps; gradients averaged over the ranks by
    `average_gradients` before the step. Returns D's loss (a scalar, detached). D is left trainable."""
    D.requires_grad_(True)
    loss = discriminator_loss(D(fake.detach()), D(real))
    if step % R1_INTERVAL == 0:
        loss = loss + lazy_r1_term(r1_penalty(D, real), gamma)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(D.parameters())
    opt.step()
    return loss.detach()
