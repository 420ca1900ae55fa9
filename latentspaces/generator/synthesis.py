"""Synthesis network ws -> image ('skip' architecture), with the hooks latent spaces need.

Layer names follow the NVlabs checkpoint layout: block `b{R}` at resolution R holds
`conv0` (upsampling; absent at 4x4), `conv1` and `torgb`; the 4x4 block also holds `const`.
Every styled layer is addressed by its dotted name, e.g. 'b16.conv0', and reads one w:

    b4.conv1 <- w[0], b4.torgb <- w[1]
    b{2^k}.conv0 <- w[2k-5], b{2^k}.conv1 <- w[2k-4], b{2^k}.torgb <- w[2k-3]   (k >= 3)

so each toRGB shares its w with the next block's conv0 and num_ws = 2 log2(R) - 2.

Hooks:
- S space: `styles_from_ws(ws)` gives the affine outputs (style vectors) of every layer,
  `synthesize_styles(styles)` renders from them.
- F space: `features(ws, layer)` returns the output of a conv layer; `from_feature(f, ws, layer)`
  starts there and runs only the layers above it. As in BDInvert, the RGB skip accumulated
  below the layer is dropped (treated as zero): the image is rebuilt from the feature alone.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from .mapping import FullyConnectedLayer
from .ops import LRELU_GAIN, bias_act, folded_epilogues, lrelu_, modulated_conv2d, setup_filter, upsample2d

NOISE_MODES = ("const", "random", "none")
# experiments/benchmarks/bench_synthesis.py (BENCHMARKS.md): activation scaling (non-fused) beat the grouped
# conv (fused) in all four measured cases on an H100 (NCHW layers) and, with the channels-last convolutions and
# folded epilogues, in all four on the 2-core CPU (0.23-0.60x the fused time), so it is the default on every
# device and for every input.
DEFAULT_FUSED_MODCONV = False
LayerEdit = Callable[[torch.Tensor], torch.Tensor]


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + leaky ReLU (optionally upsampling by 2)."""

    def __init__(
        self,
        in_channels: int,                 # input feature channels I
        out_channels: int,                # output feature channels O
        w_dim: int,                       # latent size feeding the style affine
        resolution: int,                  # output resolution (pixels) = noise map size
        kernel_size: int = 3,             # conv kernel size
        up: int = 1,                      # 1, or 2 for the upsampling conv0 of a block
        use_noise: bool = True,           # learn a noise strength and keep a fixed noise map
        conv_clamp: Optional[float] = None,  # clamp activations to +-conv_clamp (NVlabs train.py: 256)
        resample_taps: Sequence[float] = (1, 3, 3, 1),  # 1-D taps of the upsampling filter
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", setup_filter(resample_taps), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        style: torch.Tensor,
        noise_mode: str = "const",
        fused: bool = True,
        noise_generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """x [N, I, R/up, R/up], style [N, I] -> [N, O, R, R]."""
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            noise = torch.randn(shape, device=x.device, dtype=x.dtype, generator=noise_generator) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        conv = dict(demodulate=True, up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                    noise=noise, fused=fused)
        clamp = self.conv_clamp  # NVlabs scales the clamp by the layer gain, which is 1 here
        if not folded_epilogues():
            x = modulated_conv2d(x, self.weight, style, **conv)
            return bias_act(x, self.bias, "lrelu", gain=LRELU_GAIN, clamp=clamp)
        # The same with bias and gain in the conv's one-pass epilogue, then the activation in place.
        x = lrelu_(modulated_conv2d(x, self.weight, style, bias=self.bias, gain=LRELU_GAIN, **conv))
        return x if clamp is None else x.clamp(-clamp, clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation; style scaled by 1/sqrt(fan_in)."""

    def __init__(
        self,
        in_channels: int,                 # input feature channels
        out_channels: int,                # image channels (3)
        w_dim: int,                       # latent size feeding the style affine
        conv_clamp: Optional[float] = None,  # clamp output to +-conv_clamp
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.conv_clamp = in_channels, out_channels, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, fused: bool = True) -> torch.Tensor:
        """x [N, I, R, R], style [N, I] -> [N, out_channels, R, R]."""
        if not folded_epilogues():
            x = modulated_conv2d(x, self.weight, style * self.weight_gain, demodulate=False, fused=fused)
            return bias_act(x, self.bias, "linear", clamp=self.conv_clamp)
        x = modulated_conv2d(x, self.weight, style * self.weight_gain, demodulate=False, bias=self.bias, fused=fused)
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' generator: [const], [conv0 (up)], conv1, torgb."""

    def __init__(
        self,
        in_channels: int,                 # channels from the block below (0 for the 4x4 block)
        out_channels: int,                # channels of this block
        w_dim: int,                       # latent size
        resolution: int,                  # this block's resolution
        img_channels: int = 3,            # RGB channels
        use_noise: bool = True,
        conv_clamp: Optional[float] = None,
        resample_taps: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.resolution = resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv_names: List[str] = ["conv1"]
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, use_noise=use_noise,
                                        conv_clamp=conv_clamp, resample_taps=resample_taps)
            self.conv_names = ["conv0", "conv1"]
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, use_noise=use_noise,
                                    conv_clamp=conv_clamp, resample_taps=resample_taps)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", setup_filter(resample_taps), persistent=False)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] (values nominally in [-1, 1])."""

    def __init__(
        self,
        w_dim: int,                       # latent size
        resolution: int,                  # output resolution, a power of two in [4, 1024]
        channels: Dict[int, int],         # feature channels per block resolution {4: C4, 8: C8, ...}
        img_channels: int = 3,            # RGB channels
        use_noise: bool = True,           # per-layer noise inputs
        conv_clamp: Optional[float] = None,  # clamp activations (NVlabs checkpoints: 256)
        resample_taps: Sequence[float] = (1, 3, 3, 1),  # FIR taps for all resampling
    ):
        super().__init__()
        log2 = int(round(math.log2(resolution))) if resolution > 0 else 0
        if resolution < 4 or 2**log2 != resolution:
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.resolutions = [2**k for k in range(2, log2 + 1)]
        missing = [r for r in self.resolutions if r not in channels]
        if missing:
            raise ValueError(f"channels has no entry for resolutions {missing} (got {sorted(channels)})")
        self.channels = {r: int(channels[r]) for r in self.resolutions}
        self.layer_names: List[str] = []      # every styled layer, in execution order
        self.w_index: Dict[str, int] = {}     # layer name -> index into ws
        self.style_dims: Dict[str, int] = {}  # layer name -> style vector length (input channels)
        for res in self.resolutions:
            in_ch = 0 if res == 4 else self.channels[res // 2]
            block = SynthesisBlock(in_ch, self.channels[res], w_dim, res, img_channels, use_noise, conv_clamp, resample_taps)
            setattr(self, f"b{res}", block)
            k = int(math.log2(res))
            idx = {"conv0": 2 * k - 5, "conv1": 0 if res == 4 else 2 * k - 4, "torgb": 1 if res == 4 else 2 * k - 3}
            for lname in block.conv_names + ["torgb"]:
                name = f"b{res}.{lname}"
                self.layer_names.append(name)
                self.w_index[name] = idx[lname]
                self.style_dims[name] = getattr(block, lname).in_channels
        self.num_ws = 2 * log2 - 2
        self.feature_layers = [n for n in self.layer_names if not n.endswith("torgb")]

    # ------------------------------------------------------------------ helpers
    def layer(self, name: str) -> nn.Module:
        """The module of a styled layer, e.g. layer('b16.conv0')."""
        if name not in self.w_index:
            raise KeyError(f"unknown layer {name!r}; layers are {self.layer_names}")
        block, lname = name.split(".")
        return getattr(getattr(self, block), lname)

    def feature_shape(self, layer: str) -> tuple:
        """Shape [C, H, W] of the output of a conv layer."""
        self._check_feature_layer(layer)
        mod = self.layer(layer)
        return (mod.out_channels, mod.resolution, mod.resolution)

    def layers_after(self, layer: str) -> List[str]:
        """Styled layers that run after `layer` when synthesis starts from its output."""
        self._check_feature_layer(layer)
        return self.layer_names[self.layer_names.index(layer) + 1 :]

    def w_indices_after(self, layer: str) -> List[int]:
        """Sorted indices into ws read by the layers above `layer` (the detail codes)."""
        return sorted({self.w_index[n] for n in self.layers_after(layer)})

    def _conv_layers_upto(self, layer: str) -> List[str]:
        """Conv layers from the first up to and including `layer` (what computing its output needs)."""
        self._check_feature_layer(layer)
        return self.feature_layers[: self.feature_layers.index(layer) + 1]

    def _check_feature_layer(self, layer: str) -> None:
        if layer not in self.feature_layers:
            raise ValueError(f"{layer!r} is not a conv layer of this generator; choose one of {self.feature_layers}")

    def _check_ws(self, ws: torch.Tensor) -> None:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(
                f"synthesis expects ws of shape [N, {self.num_ws}, {self.w_dim}] (num_ws, w_dim), got {tuple(ws.shape)}"
            )

    # ------------------------------------------------------------------ styles
    def styles_from_ws(self, ws: torch.Tensor, layers: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
        """Style vectors (affine outputs) {layer name: [N, style_dims[name]]} for `layers` (default: all)."""
        self._check_ws(ws)
        names = self.layer_names if layers is None else layers
        return {n: self.layer(n).affine(ws[:, self.w_index[n]]) for n in names}

    def synthesize_styles(
        self,
        styles: Dict[str, torch.Tensor],
        *,
        noise_mode: str = "const",
        fused_modconv: Optional[bool] = None,
        noise_generator: Optional[torch.Generator] = None,
        start_layer: Optional[str] = None,
        start_feature: Optional[torch.Tensor] = None,
        stop_layer: Optional[str] = None,
        edits: Optional[Dict[str, LayerEdit]] = None,
    ) -> torch.Tensor:
        """Run the network from style vectors.

        start_layer/start_feature: begin after `start_layer`, whose output is `start_feature`
        [N, C, H, W]; only the layers above run and the RGB skip from below is zero.
        stop_layer: return the output feature of that conv layer instead of the image.
        edits: {conv layer name: fn}; the output x of each named conv is replaced by fn(x) [same shape], in
        layer order, and the network runs on from there (the RGB skip is kept; each fn sees the effect of
        the edits below it). Compensation heads hook in here (SDIC's DICN at one layer, multi-stage
        heads at several).
        Returns the image [N, img_channels, R, R] or the feature at `stop_layer`.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if (start_layer is None) != (start_feature is None):
            raise ValueError("start_layer and start_feature go together")
        if stop_layer is not None:
            self._check_feature_layer(stop_layer)
        edits = edits or {}
        for layer in edits:
            self._check_feature_layer(layer)
        running = start_layer is None
        x = img = None
        if start_layer is not None:
            expected = self.feature_shape(start_layer)
            if start_feature.ndim != 4 or tuple(start_feature.shape[1:]) != expected:
                raise ValueError(f"feature for {start_layer!r} must be [N, {', '.join(map(str, expected))}], "
                                 f"got {tuple(start_feature.shape)}")
            if stop_layer is not None and self.layer_names.index(stop_layer) <= self.layer_names.index(start_layer):
                raise ValueError(f"stop_layer {stop_layer!r} is not above start_layer {start_layer!r}")
        needed = self.layer_names if start_layer is None else self.layers_after(start_layer)
        if stop_layer is not None:  # a feature is wanted: no toRGB runs, nothing above stop_layer
            needed = [n for n in needed if n in self._conv_layers_upto(stop_layer)]
        missing = [n for n in needed if n not in styles]
        if missing:
            raise KeyError(f"styles missing for layers {missing}")
        n = next(iter(styles.values())).shape[0] if styles else start_feature.shape[0]
        fused = DEFAULT_FUSED_MODCONV if fused_modconv is None else fused_modconv
        kw = dict(noise_mode=noise_mode, fused=fused, noise_generator=noise_generator)

        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            for lname in block.conv_names:
                name = f"b{res}.{lname}"
                if not running:
                    if name == start_layer:
                        running, x = True, start_feature
                    continue
                if x is None:
                    x = block.const.unsqueeze(0).expand(n, -1, -1, -1)
                x = getattr(block, lname)(x, styles[name], **kw)
                if name in edits:
                    out = edits[name](x)
                    if out.shape != x.shape:
                        raise ValueError(f"the edit of {name} must keep its shape {tuple(x.shape)}, got {tuple(out.shape)}")
                    x = out
                if name == stop_layer:
                    return x.contiguous()   # public boundary: NCHW, whatever layout the convs ran in
            if not running or stop_layer is not None:
                continue
            if img is not None:
                img = upsample2d(img, block.resample_filter)
            y = block.torgb(x, styles[f"b{res}.torgb"], fused=fused)
            img = y if img is None else img + y
        return img.contiguous()

    # ------------------------------------------------------------------ ws entry points
    def forward(self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: Optional[bool] = None,
                noise_generator: Optional[torch.Generator] = None,
                edits: Optional[Dict[str, LayerEdit]] = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R]; `edits` as in `synthesize_styles` (a hook that
        returns its input unchanged reads a layer's output on the way, as the drag editor does)."""
        return self.synthesize_styles(self.styles_from_ws(ws), noise_mode=noise_mode, fused_modconv=fused_modconv,
                                      noise_generator=noise_generator, edits=edits)

    def with_edits(self, ws: torch.Tensor, edits: Dict[str, LayerEdit], **kwargs) -> torch.Tensor:
        """Image for ws [N, num_ws, w_dim] with the output x of each conv `layer` in `edits` replaced by
        edits[layer](x), applied in layer order."""
        return self.synthesize_styles(self.styles_from_ws(ws), edits=edits, **kwargs)

    def with_edit(self, ws: torch.Tensor, layer: str, edit_fn: LayerEdit, **kwargs) -> torch.Tensor:
        """Image for ws [N, num_ws, w_dim] with the output x of conv `layer` replaced by edit_fn(x)."""
        return self.with_edits(ws, {layer: edit_fn}, **kwargs)

    def features(self, ws: torch.Tensor, layer: str, **kwargs) -> torch.Tensor:
        """Output of conv `layer` [N, C, H, W] for ws [N, num_ws, w_dim]; runs only layers up to it."""
        return self.synthesize_styles(self.styles_from_ws(ws, self._conv_layers_upto(layer)), stop_layer=layer, **kwargs)

    def from_feature(self, feature: torch.Tensor, ws: torch.Tensor, layer: str, **kwargs) -> torch.Tensor:
        """Image from the output `feature` of conv `layer` and the ws of the layers above it.

        ws is the full [N, num_ws, w_dim]; only `w_indices_after(layer)` are read.
        The RGB skip from the layers below `layer` is dropped (zero), as in BDInvert.
        """
        styles = self.styles_from_ws(ws, self.layers_after(layer))
        return self.synthesize_styles(styles, start_layer=layer, start_feature=feature, **kwargs)
