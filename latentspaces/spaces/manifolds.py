"""Where each field of a code lives: constraint objects with `projx` and `retr` (as geoopt's manifolds).

The inverter calls `projx_` after every optimizer step (projected optimization) and edits call `retr`
(move by a step, land on the manifold); neither knows which manifold a field lives on.

- `Euclidean`: unconstrained (W, W+, S and F codes); projx is the identity, retr(x, u) = x + u.
- `Sphere(radius)`: every row x_i on the sphere ||x_i|| = radius over the last dim (Z-type codes on the
  sqrt(z_dim) sphere, "Revisiting Latent Space of GAN Inversion", Eq. 5); retr(x, u) = projx(x + u).
- `WhitenedChart(stats)`: P_N's whitened codes v, unconstrained, whose edit steps are given in W:
  retr(v, u) = whiten(unwhiten(v) + u), so W-space directions edit P_N codes exactly.

In `retr` the step u is expressed in the coordinates edit directions are given in: the field's own for
Euclidean fields and spheres, W for P_N's chart.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Manifold(Protocol):
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest point of the manifold to x [..., D] (a new tensor)."""

    def projx_(self, x: torch.Tensor) -> torch.Tensor:
        """projx in place (no autograd history); returns x."""

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Move x [..., D] by the step u (broadcastable) and land on the manifold (a new tensor)."""


class Euclidean:
    """Unconstrained codes."""

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def projx_(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x + u

    def __repr__(self) -> str:
        return "Euclidean()"


def retract_to_sphere_(z: torch.Tensor, radius: float) -> torch.Tensor:
    """In place: z_i <- radius * z_i / ||z_i|| over the last dim; each z_i separately."""
    with torch.no_grad():
        z.mul_(radius / z.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return z


class Sphere:
    """Rows on the sphere of `radius` over the last dim (retraction by renormalisation)."""

    def __init__(self, radius: float):
        if not radius > 0:
            raise ValueError(f"sphere radius must be > 0, got {radius}")
        self.radius = float(radius)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.radius / x.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    def projx_(self, x: torch.Tensor) -> torch.Tensor:
        return retract_to_sphere_(x, self.radius)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return retract_to_sphere_(x + u, self.radius)

    def __repr__(self) -> str:
        return f"Sphere(radius={self.radius:g})"


class WhitenedChart:
    """P_N codes v = whiten(w): unconstrained, with edit steps in W (exact through the inverse whitening)."""

    def __init__(self, stats):
        self.stats = stats  # a PNStats: whiten / unwhiten

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def projx_(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.stats.whiten(self.stats.unwhiten(x) + u)

    def __repr__(self) -> str:
        return "WhitenedChart()"


__all__ = ["Euclidean", "Manifold", "Sphere", "WhitenedChart", "retract_to_sphere_"]
