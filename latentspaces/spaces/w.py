"""W and W+: intermediate latents (one w per image, or one per layer)."""

from __future__ import annotations

from typing import Dict, Optional

import torch

from .base import LatentSpace
from .code import Code
from .pn import PNStats


def _mapped(space: LatentSpace, shape: tuple, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(*shape, space.G.z_dim, generator=gen).to(space.device)
    return space.G.mapping(z)


@torch.no_grad()
def w_spread(G, samples: int = 10_000, seed: int = 123) -> float:
    """sqrt(mean ||w - mean(w)||^2) over `samples` mapped z's: the scale of W that StyleGAN2's projector
    (and PTI's pivot) sizes its noise by ("Analyzing and Improving the Image Quality of StyleGAN", Appendix D)."""
    gen = torch.Generator().manual_seed(seed)
    return sample_spread(G.mapping(torch.randn(samples, G.z_dim, generator=gen).to(G.w_avg.device)))


def sample_spread(w: torch.Tensor) -> float:
    """sqrt(mean ||w_i - mean(w)||^2) of samples w [S, w_dim]: the total (not per-dimension) RMS spread."""
    return ((w - w.mean(0)).square().sum() / w.shape[0]).sqrt().item()


def pn_penalty(pn: Optional[PNStats], pn_lambda: float, w: torch.Tensor) -> Dict[str, torch.Tensor]:
    """{'pn': pn_lambda * mean(v^2)} per image for W-type codes w [N, ..., w_dim]; {} without statistics."""
    if pn is None:
        return {}
    return {"pn": pn_lambda * pn.whiten(w).square().flatten(1).mean(1)}


class _WBase(LatentSpace):
    kind = edit_field = "w"

    def __init__(self, G, pn: Optional[PNStats] = None, pn_lambda: float = 0.001, **kwargs):
        """pn: optional P_N statistics; adds the penalty pn_lambda * mean(v^2) (W+(P_N) of the papers)."""
        super().__init__(G, **kwargs)
        self.pn, self.pn_lambda = pn, pn_lambda

    def penalty(self, code: Code) -> Dict[str, torch.Tensor]:
        return pn_penalty(self.pn, self.pn_lambda, code.w)


class W(_WBase):
    """One w [N, w_dim] per image, broadcast to every layer; starts at w_avg."""

    ws_layout = "shared"

    def random(self, n: int, seed: int = 0) -> Code:
        return Code(w=_mapped(self, (n,), seed))

    def mean(self, n: int) -> Code:
        return Code(w=self.G.w_avg.expand(n, -1).clone())

    def from_ws(self, ws: torch.Tensor) -> Code:
        if ws.ndim == 2:
            return Code(w=ws.clone())
        if not torch.allclose(ws, ws[:, :1].expand_as(ws)):
            raise ValueError("W codes need the same w in every layer; use WPlus for per-layer ws")
        return Code(w=ws[:, 0].clone())

    def to_ws(self, code: Code) -> torch.Tensor:
        return self.G.broadcast(code.w)


class WPlus(_WBase):
    """One w per layer [N, num_ws, w_dim]; `random` maps an independent z per layer."""

    per_layer, ws_layout = True, "per_layer"

    def random(self, n: int, seed: int = 0) -> Code:
        return Code(w=_mapped(self, (n, self.G.num_ws), seed))

    def mean(self, n: int) -> Code:
        return Code(w=self.G.w_avg.expand(n, self.G.num_ws, -1).clone())

    def from_ws(self, ws: torch.Tensor) -> Code:
        return Code(w=self.G.broadcast(ws).clone())

    def to_ws(self, code: Code) -> torch.Tensor:
        return code.w
