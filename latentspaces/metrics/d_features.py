"""A perceptual distance for the default domain from the trained discriminator's features.

LPIPS's VGG/AlexNet backbones are not on a fresh machine, so the default model ships its own:
the activations of the trained StyleGAN2 discriminator's blocks (32x32 ... 4x4 for 64 px), each
normalised to unit length over channels at every position, compared by squared difference,
averaged over positions and summed over blocks: LPIPS's recipe with D's features and equal
weights (no learned linear heads). It is called "D-features distance" everywhere, never LPIPS.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..discriminator import Discriminator


def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.square().sum(dim=1, keepdim=True) + eps).sqrt()


class DiscriminatorFeatures(nn.Module):
    """d(x, y) -> [N]: sum over D's blocks of mean_{h,w} ||unit(D_l(x)) - unit(D_l(y))||^2."""

    def __init__(self, D: Discriminator, blocks: Optional[Sequence[int]] = None):
        super().__init__()
        self.D = D.eval().requires_grad_(False)
        self.blocks = list(range(len(D.block_names))) if blocks is None else list(blocks)
        self.name = "d-features"
        self._cache_key, self._cache_feats = None, None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"perceptual distance compares images of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        fx = self.D.features(x)
        # The targets of an inversion stay the same tensor for every step: reuse their features.
        # Keyed by the tensor object itself (kept alive, so its memory cannot be reused) and its version.
        if self._cache_key is None or self._cache_key[0] is not y or self._cache_key[1] != y._version:
            with torch.no_grad():
                self._cache_feats = self.D.features(y)
            self._cache_key = (y, y._version)
        fy = self._cache_feats
        total = x.new_zeros(x.shape[0])
        for i in self.blocks:
            total = total + (_unit(fx[i]) - _unit(fy[i])).square().sum(1).mean(dim=[1, 2])
        return total
