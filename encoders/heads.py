"""The head sequence every caller of a compensation head runs, in one place.

A compensation head corrects a base W+ encoder's reconstruction ("Spatial-Contextual Discrepancy
Information Compensation for GAN Inversion", Fig. 2; HFGI, GradStyle and ReGANIE alike):

    ws = base(x)                        # [N, num_ws, w_dim]
    x0 = G.synthesis(ws)                # [N, 3, R, R], noise 'const'
    comp = head.bind(base).compensate(G, x, ws, x0)

and edits move comp.ws by the change a W direction makes (`wplus_delta`), the correction carried over
by `head.edit`. The comparison study, the editor and the command line's fit check all call these.
"""

from __future__ import annotations

from typing import Optional

import torch

from latentspaces.directions import Direction
from latentspaces.interfaces import Compensation, CompensationHead
from latentspaces.spaces import Code, WPlus


@torch.no_grad()
def compensate(G: torch.nn.Module, base: torch.nn.Module, head: Optional[CompensationHead],
               x: torch.Tensor) -> Compensation:
    """The head's correction of the base encoder's reconstruction of x [N, 3, R, R] in [-1, 1].

    head None gives the base reconstruction itself: Compensation(image=G(base(x)), ws=base(x)).
    """
    ws = base(x)
    x0 = G.synthesis(ws, noise_mode="const")
    if head is None:
        return Compensation(image=x0, ws=ws)
    return head.bind(base).compensate(G, x, ws, x0)


def wplus_delta(G: torch.nn.Module, ws: torch.Tensor, direction: Direction, alpha) -> torch.Tensor:
    """The change of ws [N, num_ws, w_dim] that editing along a W direction by alpha makes (alpha a number or
    [N, 1, 1], one per image), as W+ edits it (`latentspaces.spaces.WPlus.edit`)."""
    return WPlus(G).edit(Code(w=ws), direction, alpha).w - ws


def edit_compensated(G: torch.nn.Module, head: Optional[CompensationHead], comp: Compensation, direction: Direction,
                     alpha) -> torch.Tensor:
    """Images [N, 3, R, R] of comp's codes edited along a W direction by alpha, the head's correction carried
    over (`head.edit`); head None renders the edited base codes."""
    delta = wplus_delta(G, comp.ws, direction, alpha)
    if head is None:
        return G.synthesis(comp.ws + delta, noise_mode="const")
    return head.edit(G, comp, delta)


__all__ = ["compensate", "edit_compensated", "wplus_delta"]
