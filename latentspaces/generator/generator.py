"""The StyleGAN2 generator: mapping network + synthesis network + truncation."""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from .config import check_config
from .mapping import MappingNetwork
from .synthesis import SynthesisNetwork


def default_channels(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> Dict[int, int]:
    """NVlabs channel rule min(channel_base // R, channel_max) for every block resolution R.

    channel_base 16384 equals rosinality's channel_multiplier 1, 32768 equals 2 (config-f).
    """
    log2 = int(round(math.log2(resolution)))
    return {2**k: min(channel_base // 2**k, channel_max) for k in range(2, log2 + 1)}


class Generator(nn.Module):
    """StyleGAN2 generator ('skip' architecture), pure PyTorch, no custom ops.

    The arguments are checked by `config.check_config` (ConfigError, a ValueError, names the field).
    Reproduces rosinality's stylegan2-pytorch and NVlabs' stylegan2-ada-pytorch to float32
    rounding (see latentspaces.checkpoints for the loaders). Images are float32 NCHW in
    nominally [-1, 1].
    """

    def __init__(
        self,
        z_dim: int = 512,                    # input latent z size
        w_dim: int = 512,                    # intermediate latent w size
        resolution: int = 1024,              # output resolution (power of two, >= 4)
        img_channels: int = 3,               # output channels
        mapping_layers: int = 8,             # fully connected layers in the mapping network
        mapping_lr_multiplier: float = 0.01,  # lr multiplier of the mapping network
        channels: Optional[Dict[int, int]] = None,  # {resolution: channels}; default from channel_base/max
        channel_base: int = 32768,           # used when channels is None
        channel_max: int = 512,              # used when channels is None
        conv_clamp: Optional[float] = None,  # activation clamp (NVlabs train.py checkpoints: 256)
        use_noise: bool = True,              # per-layer noise inputs
        resample_taps: Sequence[float] = (1, 3, 3, 1),  # FIR taps for up/downsampling
    ):
        super().__init__()
        c = check_config(dict(z_dim=z_dim, w_dim=w_dim, resolution=resolution, img_channels=img_channels,
                              mapping_layers=mapping_layers, mapping_lr_multiplier=mapping_lr_multiplier,
                              channels=channels, channel_base=channel_base, channel_max=channel_max,
                              conv_clamp=conv_clamp, use_noise=use_noise, resample_taps=resample_taps))
        z_dim, w_dim, resolution, img_channels = c["z_dim"], c["w_dim"], c["resolution"], c["img_channels"]
        mapping_layers, mapping_lr_multiplier, channels = c["mapping_layers"], c["mapping_lr_multiplier"], c["channels"]
        conv_clamp, use_noise, resample_taps = c["conv_clamp"], c["use_noise"], c["resample_taps"]
        self.z_dim, self.w_dim, self.resolution, self.img_channels = z_dim, w_dim, resolution, img_channels
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_multiplier)
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels, img_channels, use_noise, conv_clamp, resample_taps)
        self.num_ws = self.synthesis.num_ws
        self._config = dict(
            z_dim=z_dim, w_dim=w_dim, resolution=resolution, img_channels=img_channels,
            mapping_layers=mapping_layers, mapping_lr_multiplier=mapping_lr_multiplier,
            channels={str(k): v for k, v in sorted(self.synthesis.channels.items())},
            conv_clamp=conv_clamp, use_noise=use_noise, resample_taps=[float(t) for t in resample_taps],
        )

    @property
    def config(self) -> dict:
        """JSON-serialisable constructor arguments."""
        return dict(self._config)

    @property
    def w_avg(self) -> torch.Tensor:
        """Average w [w_dim] (the truncation centre)."""
        return self.mapping.w_avg

    def truncate(self, ws: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        """w_avg + psi (ws - w_avg), optionally for the first `truncation_cutoff` layers of ws [N, L, w_dim]."""
        return self.mapping.truncate(ws, truncation_psi, truncation_cutoff)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, w_dim] -> ws [N, num_ws, w_dim]; ws [N, num_ws, w_dim] passes through."""
        if w.ndim == 2 and w.shape[1] == self.w_dim:
            return w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if w.ndim == 3 and w.shape[1:] == (self.num_ws, self.w_dim):
            return w
        raise ValueError(f"expected w [N, {self.w_dim}] or ws [N, {self.num_ws}, {self.w_dim}], got {tuple(w.shape)}")

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: Optional[int] = None,
        noise_mode: str = "const",
        **synthesis_kwargs,
    ) -> torch.Tensor:
        """z [N, z_dim] (or per-layer [N, num_ws, z_dim]) -> image [N, img_channels, R, R]."""
        if z.ndim == 3 and z.shape[1] != self.num_ws:
            raise ValueError(f"per-layer z must be [N, {self.num_ws}, {self.z_dim}], got {tuple(z.shape)}")
        ws = self.broadcast(self.mapping(z))
        ws = self.truncate(ws, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)
