"""Mapping network z -> w, with equalised-learning-rate fully connected layers."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .ops import LRELU_GAIN, bias_act, folded_epilogues, lrelu_


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer (both reference codebases' definition).

    Parameters are stored as `randn / lr_multiplier` and scaled at run time by
    `lr_multiplier / sqrt(in_features)` (weight) and `lr_multiplier` (bias), so Adam sees
    every layer at the same scale.
    """

    def __init__(
        self,
        in_features: int,                 # input width
        out_features: int,                # output width
        bias: bool = True,                # learn a bias
        activation: str = "linear",       # 'linear' or 'lrelu' (slope 0.2, gain sqrt(2))
        lr_multiplier: float = 1.0,       # learning-rate multiplier (0.01 in the mapping network)
        bias_init: float = 0.0,           # initial bias (1 for the style affines)
    ):
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"unknown activation {activation!r}; expected 'linear' or 'lrelu'")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.lr_multiplier = lr_multiplier
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, in_features] -> [N, out_features]."""
        # lrelu(a) * sqrt 2 == lrelu(a * sqrt 2): with folded epilogues the activation's gain goes into
        # weight and bias, and the bias into the matmul.
        folded = folded_epilogues()
        g = LRELU_GAIN if self.activation == "lrelu" and folded else 1.0
        w = self.weight * (self.weight_gain * g)
        b = self.bias * (self.bias_gain * g) if self.bias is not None else None
        if self.activation == "lrelu" and not folded:
            return bias_act(x.matmul(w.t()), b, "lrelu", gain=LRELU_GAIN)
        x = torch.addmm(b[None], x, w.t()) if b is not None else x.matmul(w.t())
        return lrelu_(x) if self.activation == "lrelu" else x

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}, lr_mul={self.lr_multiplier}"


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PixelNorm over the last dim: x * rsqrt(mean(x^2) + eps)."""
    return x * (x.square().mean(dim=-1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [N, z_dim] (or per-layer z [N, L, z_dim]) -> w [N, w_dim] (or [N, L, w_dim]).

    PixelNorm, then `num_layers` leaky-ReLU fully connected layers. `w_avg` is a buffer
    (the dlatent average used for truncation); it is never updated implicitly.
    """

    def __init__(
        self,
        z_dim: int,                       # input latent size
        w_dim: int,                       # output latent size
        num_layers: int = 8,              # fully connected layers
        lr_multiplier: float = 0.01,      # learning-rate multiplier of every layer
        layer_features: int | None = None,  # hidden width; defaults to w_dim
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the mapping network needs at least one layer, got {num_layers}")
        self.z_dim, self.w_dim, self.num_layers = z_dim, w_dim, num_layers
        hidden = w_dim if layer_features is None else layer_features
        features = [z_dim] + [hidden] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None
    ) -> torch.Tensor:
        """z [N, z_dim] -> w [N, w_dim]; per-layer z [N, L, z_dim] -> [N, L, w_dim] (each z mapped separately).

        Truncation pulls w towards `w_avg`: w_avg + psi (w - w_avg); `truncation_cutoff`
        limits it to the first layers and therefore needs per-layer input.
        """
        if z.ndim not in (2, 3) or z.shape[-1] != self.z_dim:
            raise ValueError(
                f"mapping expects z of shape [N, {self.z_dim}] or [N, L, {self.z_dim}], got {tuple(z.shape)}"
            )
        lead = z.shape[:-1]
        x = normalize_2nd_moment(z.reshape(-1, self.z_dim).to(self.fc0.weight.dtype))
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return self.truncate(x.reshape(*lead, self.w_dim), truncation_psi, truncation_cutoff)

    def truncate(self, w: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        """w_avg + psi (w - w_avg) for w [..., w_dim]; with a cutoff only ws[:, :cutoff] of ws [N, L, w_dim]."""
        if truncation_psi == 1:
            return w
        w_avg = self.w_avg.to(w.dtype)
        if truncation_cutoff is None:
            return w_avg.lerp(w, truncation_psi)
        if w.ndim != 3:
            raise ValueError(
                "truncation_cutoff selects layers, so it needs per-layer codes [N, L, w_dim]; "
                f"got {tuple(w.shape)}. Map per-layer z, or truncate after G.broadcast(w)."
            )
        out = w.clone()
        out[:, :truncation_cutoff] = w_avg.lerp(w[:, :truncation_cutoff], truncation_psi)
        return out
