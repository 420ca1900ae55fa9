"""StyleGAN2 'resnet' discriminator (used to train the default model; its features are a perceptual
distance for the default domain)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from .assets import DEFAULT_DISCRIMINATOR, asset_path
from .errors import CheckpointError
from .file_rules import config_is_plausible
from .fingerprints import check_sidecar
from .generator.mapping import FullyConnectedLayer
from .generator.ops import LRELU_GAIN, bias_act, conv2d, filter2d, folded_epilogues, lrelu_, setup_filter
from .storage import load_module, read_header, save_tensors


class Conv2dLayer(nn.Module):
    """Equalised-lr conv, optionally downsampling by 2 (FIR blur [1,3,3,1] first, as NVlabs)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",     # 'linear' or 'lrelu' (slope 0.2, gain sqrt(2))
        down: int = 1,                  # 1 or 2
        resample_taps: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"unknown activation {activation!r}; expected 'linear' or 'lrelu'")
        self.activation, self.down, self.kernel_size = activation, down, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("resample_filter", setup_filter(resample_taps), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """x [N, I, H, W] -> [N, O, H/down, W/down]; `gain` (> 0) scales the output."""
        if gain <= 0:
            raise ValueError(f"Conv2dLayer gain must be positive, got {gain}")
        g = (LRELU_GAIN if self.activation == "lrelu" else 1.0) * gain
        folded = folded_epilogues()
        # bias_act(conv(x, w * weight_gain), bias, act, gain=g), or the same with g folded into the conv's
        # weight and bias: lrelu(a) * g == lrelu(a * g) for g > 0, so the output needs one more pass, not three.
        w = self.weight * (self.weight_gain * (g if folded else 1.0))
        b = None if self.bias is None or not folded else self.bias * g
        k = self.kernel_size
        if self.down == 2:
            # Blur, then a stride-2 'valid' conv: padding (f-2)/2 + (k-1)/2 per side gives exactly half the size.
            pad = (self.resample_filter.shape[0] - 2) // 2 + (k - 1) // 2
            x = filter2d(x, self.resample_filter, (pad,) * 4)
            x = conv2d(x, w, b, stride=2) if k > 1 else conv2d(x[:, :, ::2, ::2], w, b)
        else:
            x = conv2d(x, w, b, padding=k // 2)
        if not folded:
            return bias_act(x, self.bias, self.activation, gain=g)
        return lrelu_(x) if self.activation == "lrelu" else x


class DiscriminatorBlock(nn.Module):
    """[fromrgb] -> conv0 3x3 -> conv1 3x3 down, plus a 1x1 down skip; sum scaled by sqrt(1/2)."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, first: bool, img_channels: int = 3):
        super().__init__()
        self.resolution = resolution
        self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation="lrelu") if first else None
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=2)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor, img: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStd(nn.Module):
    """Appends the std over groups of `group_size` samples as one extra feature map."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g != 0:
            g = 1
        y = x.reshape(g, -1, c, h, w)
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()   # [n/g, c, h, w]
        y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1)          # [n/g, 1, 1, 1]
        y = y.repeat(g, 1, h, w)                                 # [n, 1, h, w]
        return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """img [N, 3, R, R] in [-1, 1] -> logits [N, 1]."""

    def __init__(
        self,
        resolution: int = 64,                          # input resolution (a power of two in [8, 2048])
        channels: Optional[Dict[int, int]] = None,      # {resolution: channels}, resolution R down to 4
        img_channels: int = 3,
        mbstd_group: int = 4,                           # minibatch-std group size
    ):
        super().__init__()
        log2 = int(round(math.log2(resolution)))
        if not 8 <= resolution <= 2048 or 2**log2 != resolution:
            raise ValueError(f"discriminator resolution must be a power of two in [8, 2048], got {resolution}")
        res_list = [2**k for k in range(log2, 2, -1)]  # R ... 8
        channels = {int(k): int(v) for k, v in (channels or {r: min(16384 // r, 512) for r in res_list + [4]}).items()}
        self.resolution, self.channels = resolution, channels
        self.img_channels, self.mbstd_group = img_channels, mbstd_group
        for r in res_list:
            setattr(self, f"b{r}", DiscriminatorBlock(channels[r], channels[r // 2], r, first=(r == resolution),
                                                      img_channels=img_channels))
        self.block_names = [f"b{r}" for r in res_list]
        c4 = channels[4]
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = Conv2dLayer(c4 + 1, c4, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(c4 * 16, c4, activation="lrelu")
        self.out = FullyConnectedLayer(c4, 1)

    @property
    def config(self) -> dict:
        return {"resolution": self.resolution, "channels": {str(k): v for k, v in self.channels.items()},
                "img_channels": self.img_channels, "mbstd_group": self.mbstd_group}

    def features(self, img: torch.Tensor, depth: Optional[int] = None) -> List[torch.Tensor]:
        """Block outputs [N, C_r, r/2, r/2] for r = R ... 8 (input to the 4x4 epilogue last).

        depth: only the first `depth` blocks are run and returned (None: all); the later blocks' cost
        is skipped, not just their output.
        """
        return [f.contiguous() for f in self.block_outputs(img, depth)]

    def block_outputs(self, img: torch.Tensor, depth: Optional[int] = None) -> List[torch.Tensor]:
        """`features` in the layout the convolutions ran in (channels-last on CPU, see
        generator.ops.layer_options): the same values without the copies back to NCHW, for callers
        that only reduce them (the D-features distance)."""
        if img.ndim != 4 or img.shape[-1] != self.resolution or img.shape[-2] != self.resolution:
            raise ValueError(f"discriminator expects images [N, 3, {self.resolution}, {self.resolution}], "
                             f"got {tuple(img.shape)}")
        names = self.block_names if depth is None else self.block_names[:depth]
        feats, x = [], None
        for name in names:
            x = getattr(self, name)(x, img)
            feats.append(x)
        return feats

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.block_outputs(img)[-1]
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))


DISCRIMINATOR_FORMAT = "latentspaces.discriminator"


def save_discriminator(D: Discriminator, path, dtype: torch.dtype = torch.float32) -> None:
    """safetensors + JSON config in the header; `dtype` float16 halves the file (features need no more)."""
    state = {k: v.detach().to(dtype) for k, v in D.state_dict().items()}
    save_tensors(path, state, DISCRIMINATOR_FORMAT, 1, config=D.config)


# The load check's bound on the score of a gray image: a trained discriminator's logits are tens at most
# (the default one's training logs them); 1e4 only comes from damaged weights.
MAX_ABS_SCORE = 1e4


def load_discriminator(path) -> Discriminator:
    """A discriminator written by `save_discriminator` (float32, eval mode, gradients off), checked like a
    generator: sidecar sha256 when present, tensors before allocation, one finite score of a fixed image."""
    check_sidecar(path)
    cfg = read_header(path, DISCRIMINATOR_FORMAT).get("config")
    config_is_plausible(cfg, str(path), "discriminator")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("channels"), dict):
        raise CheckpointError(f"{path}: the discriminator config must be an object with a 'channels' object")
    D = load_module(path, lambda: Discriminator(cfg["resolution"], {int(k): v for k, v in cfg["channels"].items()},
                                                img_channels=cfg.get("img_channels", 3),
                                                mbstd_group=cfg.get("mbstd_group", 4)), "discriminator")
    D = D.float().eval().requires_grad_(False)
    with torch.no_grad():
        score = D(torch.zeros(1, D.img_channels, D.resolution, D.resolution))
    if not bool(torch.isfinite(score).all()) or float(score.abs().max()) > MAX_ABS_SCORE:
        raise CheckpointError(f"{path}: every weight is finite, but the discriminator scores a gray image "
                              f"{float(score.flatten()[0]):.3g}; the weights are damaged")
    return D


def load_default_discriminator() -> Discriminator:
    """The trained discriminator of the default generator (its features are the default perceptual distance)."""
    return load_discriminator(asset_path(DEFAULT_DISCRIMINATOR))
