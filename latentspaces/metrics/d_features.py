"""A perceptual distance for the default domain from the trained discriminator's features.

LPIPS's VGG/AlexNet backbones are not on a fresh machine, so the default model ships its own:
the activations of the trained StyleGAN2 discriminator's blocks (32x32 ... 4x4 for 64 px), each
normalised to unit length over channels at every position, compared by squared difference,
averaged over positions and summed over blocks: LPIPS's recipe with D's features and equal
weights (no learned linear heads). It is called "D-features distance" everywhere, never LPIPS.

Cost: an inversion compares every step's images with the same targets, so the targets' unit-length
features are computed once and kept (keyed by the target tensor); only the blocks the distance sums
are run. Its share of an inversion step is printed by `experiments.benchmarks.bench_inversion_step`.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..discriminator import Discriminator


_EAGER: Dict[str, Callable] = {}   # functions wrapped by torch.compiler.disable on first use


def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.square().sum(dim=1, keepdim=True) + eps).sqrt()


class DiscriminatorFeatures(nn.Module):
    """d(x, y) -> [N]: sum over D's blocks of mean_{h,w} ||unit(D_l(x)) - unit(D_l(y))||^2.

    x, y: images [N, 3, R, R] in [-1, 1], R = D's resolution; differentiable in x.
    """

    def __init__(
        self,
        D: Discriminator,                        # its blocks' outputs are the features; frozen here
        blocks: Optional[Sequence[int]] = None,  # indices into D.block_names to sum (None: all)
    ):
        super().__init__()
        self.D = D.eval().requires_grad_(False)
        self.blocks = list(range(len(D.block_names))) if blocks is None else sorted(set(int(b) for b in blocks))
        if not self.blocks or self.blocks[0] < 0 or self.blocks[-1] >= len(D.block_names):
            raise ValueError(f"blocks must be indices in [0, {len(D.block_names)}), got {blocks!r}")
        self.depth = self.blocks[-1] + 1   # blocks past the last one summed are never run
        self.name = "d-features"
        self._cache_key, self._cache_units = None, None

    def _target_units(self, y: torch.Tensor) -> List[torch.Tensor]:
        # The targets of an inversion stay the same tensor for every step: reuse their unit features.
        # Keyed by the tensor object itself (kept alive, so its memory cannot be reused), its version,
        # and D's device and dtype (a module moved after the first call recomputes them).
        key = (y, y._version, next(self.D.parameters()).device, next(self.D.parameters()).dtype)
        if self._cache_key is None or self._cache_key[0] is not y or self._cache_key[1:] != key[1:]:
            with torch.no_grad():
                feats = self.D.block_outputs(y, self.depth)
                self._cache_units = [_unit(feats[i]) for i in self.blocks]
            self._cache_key = key
        return self._cache_units

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"perceptual distance compares images of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        fx = self.D.block_outputs(x, self.depth)
        if "target_units" not in _EAGER:
            # A cache lookup by object identity: run eagerly inside a compiled step (else every call recompiles).
            # Wrapped on first use, so that importing this module does not import torch._dynamo (~1.7 s).
            _EAGER["target_units"] = torch.compiler.disable(DiscriminatorFeatures._target_units)
        total = x.new_zeros(x.shape[0])
        for i, uy in zip(self.blocks, _EAGER["target_units"](self, y)):
            total = total + (_unit(fx[i]) - uy).square().sum(1).mean(dim=[1, 2])
        return total
