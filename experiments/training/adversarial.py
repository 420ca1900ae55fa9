"""One discriminator update beside a trained head (HFGI and GradStyle with --lambda-adv): the logistic
loss on the head's images as fakes and the training images as reals, lazy R1 on the reals. The loss
terms themselves live in `latentspaces.losses`."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from latentspaces.losses import R1_INTERVAL, discriminator_loss, lazy_r1_term, r1_penalty


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
