"""SDIC: spatial-contextual discrepancy information compensation (DIPN + DICN) over a frozen W+ encoder.

"Spatial-Contextual Discrepancy Information Compensation for GAN Inversion" (SDIC), Sec. 3; a compensation
head in the sense of `latentspaces.interfaces.CompensationHead`. Inference, as in the authors' released
forward (`fusion="base"`, the default):
    W   = E(x)                         frozen base W+ encoder, ws [N, num_ws, w_dim]
    x0  = G(W)                         initial reconstruction
    D   = DIPN(x, x0)                  discrepancy map [N, 3, r, r] at the network's input size r
    A, B, feat2 = DICN(D)
    W'  = W * (1 + A) + B              latent-code compensation
    G_l = output of conv `layer` for the base codes W (the released G7)
    F^  = sigmoid(att(feat2 + G_l)) * feat2 + G_l      latent-map compensation
    y   = G(W') with layer l's output replaced by F^   (the RGB skip from below is kept)

Editing (compensate-and-edit, released): W'_e = W' + alpha n, and layer l gets G_l(W'_e) + (F^ - G_l(W)).
At alpha = 0 this is G_l(W') + F^ - G_l(W), not F^: the released edit does not return the reconstruction
exactly; it is off by G_l(W') - G_l(W), which the training loss's 0.2 MSE(W', W) keeps small.

`fusion="compensated"` (our variant, the form the first default-sdic was trained with): G_l is taken for
W' in the fusion and in the edit's residual, F^ = sigmoid(att(feat2 + G_l(W'))) * feat2 + G_l(W'), edit
G_l(W'_e) + (F^ - G_l(W')), so alpha = 0 gives the reconstruction back exactly. Files written before the
field existed are read as "compensated" (`config_before_field`).

Sizes (the `width` multiplier scales every channel count; 1.0 is the paper's network):
- DIPN pyramids: conv3x3 + BN + LeakyReLU 0.2 with 16/24/32/96/160 channels at strides 1,2,1,2,2
  (1, 1/2, 1/2, 1/4, 1/8 of r), one pyramid per input; a U-Net up path to a 48-channel descriptor.
- Cost volume: the two descriptors stacked on a depth axis, [N, 48, 2, r, r]; a 3-D hourglass with
  8 -> 16 -> 32 -> 48 channels, downsampling by 2 in space only (the depth axis has size 2), and
  transposed-conv ups. Spatial-attention fusion of the original image's pyramid features at 1/2,
  1/4, 1/8 (att = sigmoid(conv3d(feat + cv)), cv = att * feat + cv); a head to 3 channels at r.
- Compensated layer, by generator resolution R (`default_sdic_layer`, the shared rule of
  `encoders.single_layer.default_compensated_layer`): b64.conv0 for R >= 128
  (the paper's G7 = 64x64 block's first conv at 1024 px), b{R/2}.conv0 below (b32.conv0 at 64 px).
The last layers of both DICN branches start at zero, so an untrained head returns the base
reconstruction exactly.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from latentspaces.interfaces import Compensation

from .probing import probe_features, probe_images
from .single_layer import SingleLayerHead, default_compensated_layer


default_sdic_layer = default_compensated_layer


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def conv3d_bn(cin: int, cout: int, stride=(1, 1, 1)) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm3d(cout), nn.LeakyReLU(0.2))


class Pyramid(nn.Module):
    """Spatial-contextual feature pyramid of one image with a U-Net up path.

    x [N, 3, r, r] -> descriptor [N, d, r, r] and the encoder features at 1/2, 1/4, 1/8.
    """

    STAGES = ((16, 1), (24, 2), (32, 1), (96, 2), (160, 2))

    def __init__(self, width: float = 1.0, descriptor: int = 48):
        super().__init__()
        chans = [_ch(c, width) for c, _ in self.STAGES]
        cin, layers = 3, []
        for c, (_, s) in zip(chans, self.STAGES):
            layers.append(conv_bn(cin, c, s))
            cin = c
        self.down = nn.ModuleList(layers)
        c1, _, c2, c4, c8 = chans
        self.up8 = conv_bn(c8 + c4, c4)        # 1/8 -> 1/4, with the 1/4 skip
        self.up4 = conv_bn(c4 + c2, c2)        # 1/4 -> 1/2, with the 1/2 skip
        self.up2 = conv_bn(c2 + c1, _ch(descriptor, width))  # 1/2 -> 1, with the full-resolution skip
        self.out = nn.Conv2d(_ch(descriptor, width), descriptor, 3, 1, 1)
        self.channels = {"half": c2, "quarter": c4, "eighth": c8}

    def forward(self, x: torch.Tensor):
        f1 = self.down[0](x)
        f2 = self.down[2](self.down[1](f1))
        f4 = self.down[3](f2)
        f8 = self.down[4](f4)
        u = self.up8(torch.cat([F.interpolate(f8, size=f4.shape[-2:], mode="bilinear", align_corners=False), f4], 1))
        u = self.up4(torch.cat([F.interpolate(u, size=f2.shape[-2:], mode="bilinear", align_corners=False), f2], 1))
        u = self.up2(torch.cat([F.interpolate(u, size=f1.shape[-2:], mode="bilinear", align_corners=False), f1], 1))
        return self.out(u), {"half": f2, "quarter": f4, "eighth": f8}


class AttentionFusion3d(nn.Module):
    """Inject 2-D features into a cost volume: att = sigmoid(conv3d(feat + cv)); cv <- att * feat + cv."""

    def __init__(self, feat_channels: int, cv_channels: int):
        super().__init__()
        self.proj = nn.Conv2d(feat_channels, cv_channels, 1)
        self.att = nn.Conv3d(cv_channels, cv_channels, 3, 1, 1)

    def forward(self, cv: torch.Tensor, feat2d: torch.Tensor) -> torch.Tensor:
        feat = self.proj(feat2d).unsqueeze(2).expand_as(cv)
        att = torch.sigmoid(self.att(feat + cv))
        return att * feat + cv


class DIPN(nn.Module):
    """Discrepancy information prediction: (x, x0) [N, 3, r, r] each -> discrepancy map [N, 3, r, r]."""

    def __init__(self, width: float = 1.0, descriptor: int = 48):
        super().__init__()
        self.pyr_orig, self.pyr_rec = Pyramid(width, descriptor), Pyramid(width, descriptor)
        c = [_ch(8, width), _ch(16, width), _ch(32, width), _ch(48, width)]
        self.enter = conv3d_bn(descriptor, c[0])
        self.down = nn.ModuleList([conv3d_bn(c[i], c[i + 1], (1, 2, 2)) for i in range(3)])
        fch = self.pyr_orig.channels
        self.fuse = nn.ModuleList([AttentionFusion3d(fch["half"], c[1]), AttentionFusion3d(fch["quarter"], c[2]),
                                   AttentionFusion3d(fch["eighth"], c[3])])
        self.up = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose3d(c[i + 1], c[i], (3, 4, 4), (1, 2, 2), (1, 1, 1), bias=False),
                          nn.BatchNorm3d(c[i]), nn.LeakyReLU(0.2))
            for i in reversed(range(3))])
        self.head = nn.Sequential(nn.Conv2d(2 * c[0], c[0], 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(c[0], 3, 3, 1, 1))

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        d_orig, feats = self.pyr_orig(x)
        d_rec, _ = self.pyr_rec(x0)
        cv = self.enter(torch.stack([d_orig, d_rec], dim=2))           # [N, c0, 2, r, r]
        skips = [cv]
        for down, fuse, key in zip(self.down, self.fuse, ("half", "quarter", "eighth")):
            cv = fuse(down(cv), feats[key])
            skips.append(cv)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            cv = up(cv) + skip
        n, c, d, h, w = cv.shape
        return self.head(cv.reshape(n, c * d, h, w))


class DICN(nn.Module):
    """Discrepancy information compensation: map D -> (A, B) [N, num_ws, w_dim] and feat2 [N, C_l, h_l, h_l]."""

    def __init__(self, input_size: int, num_ws: int, w_dim: int, layer_channels: int, layer_resolution: int,
                 width: float = 1.0, k: int = 2):
        super().__init__()
        self.num_ws, self.w_dim, self.k = num_ws, w_dim, k
        # Feature branch: stride-2 convs from r down to the layer's resolution.
        n_down = int(math.log2(input_size // layer_resolution))
        if 2**n_down * layer_resolution != input_size:
            raise ValueError(f"SDIC input size {input_size} must be a power-of-two multiple of the compensated "
                             f"layer's resolution {layer_resolution}")
        c = _ch(64, width)
        layers, cin = [conv_bn(3, c)], c
        for _ in range(n_down):
            layers.append(conv_bn(cin, c, 2))
        self.feat = nn.Sequential(*layers, nn.Conv2d(c, layer_channels, 3, 1, 1))
        self.att = nn.Conv2d(layer_channels, layer_channels, 3, 1, 1)
        # Latent branch: convs, then num_ws * k channels resized to w_dim positions and 1-D convs.
        self.lat = nn.Sequential(conv_bn(3, c, 2), conv_bn(c, c, 2), nn.Conv2d(c, num_ws * k, 1))
        side = int(math.isqrt(w_dim))
        self.grid = (side, w_dim // side) if side * (w_dim // side) == w_dim else (1, w_dim)
        self.lat1d = nn.Sequential(nn.Conv1d(num_ws * k, num_ws * k, 3, 1, 1), nn.LeakyReLU(0.2),
                                   nn.Conv1d(num_ws * k, 2 * num_ws, 3, 1, 1))
        nn.init.zeros_(self.feat[-1].weight)
        nn.init.zeros_(self.feat[-1].bias)
        nn.init.zeros_(self.lat1d[-1].weight)
        nn.init.zeros_(self.lat1d[-1].bias)

    def forward(self, dmap: torch.Tensor):
        feat2 = self.feat(dmap)
        lat = F.interpolate(self.lat(dmap), size=self.grid, mode="bilinear", align_corners=False)
        ab = self.lat1d(lat.flatten(2))                                  # [N, 2 num_ws, w_dim]
        a, b = ab.view(-1, 2, self.num_ws, self.w_dim).unbind(1)
        return a, b, feat2

    def fuse(self, feat2: torch.Tensor, g_l: torch.Tensor) -> torch.Tensor:
        """F^ = sigmoid(att(feat2 + G_l)) * feat2 + G_l."""
        return torch.sigmoid(self.att(feat2 + g_l)) * feat2 + g_l


FUSIONS = ("base", "compensated")


class SDIC(SingleLayerHead):
    """DIPN + DICN for a generator with `num_ws` x `w_dim` codes, compensating conv `layer`.

    Implements `latentspaces.interfaces.CompensationHead`: `compensate(G, x, ws)` takes the frozen base
    encoder's ws; `edit(G, comp, delta_ws)` is compensate-and-edit. `forward` is not used on its own.
    """

    config_before_field = {"fusion": "compensated"}   # what files written before `fusion` existed were trained with

    def __init__(
        self,
        num_ws: int,                    # generator's number of w rows
        w_dim: int,                     # generator's w dimensionality
        layer: str,                     # compensated conv layer, e.g. 'b32.conv0' (64 px), 'b64.conv0' (1024 px)
        layer_channels: int,            # channels of that layer's output
        layer_resolution: int,          # spatial size of that layer's output
        input_size: int = 64,           # side r of the network input (the paper: 256)
        width: float = 1.0,             # channel multiplier of DIPN and DICN (1.0: the paper's sizes)
        fusion: str = "base",           # G_l fused with feat2: of the base codes W ('base', released) or of W'
    ):
        super().__init__(num_ws, w_dim, layer, layer_channels, layer_resolution, input_size, width)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        self.dipn = DIPN(width)
        self.dicn = DICN(input_size, num_ws, w_dim, layer_channels, layer_resolution, width)

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON values (what an encoder file's header stores)."""
        return {**super().config, "fusion": self.fusion}

    def probe(self) -> Dict[str, torch.Tensor]:
        """The output check's pass (`encoders.probing`): DIPN on two fixed images, DICN on its map, the fusion
        with a fixed stand-in for G_l."""
        device = next(self.parameters()).device
        dmap = self.dipn(probe_images(self.input_size, seed=0).to(device), probe_images(self.input_size, seed=1).to(device))
        a, b, feat2 = self.dicn(dmap)
        g_l = probe_features(self.layer_channels, self.layer_resolution).to(device)
        return {"dmap": dmap, "a": a, "b": b, "f_hat": self.dicn.fuse(feat2, g_l)}

    def compensate(self, G, x: torch.Tensor, ws: torch.Tensor, x0: Optional[torch.Tensor] = None,
                   noise_mode: str = "const") -> Compensation:
        """x [N, 3, R, R] in [-1, 1], base ws [N, num_ws, w_dim] (x0 = G(ws) when given) -> Compensation with
        image y, ws W' and cache {'residual': F^ - G_l, 'g_l': G_l, 'f_hat': F^, 'dmap': D}, G_l of W
        (fusion 'base') or of W' ('compensated')."""
        self.check_codes(G, ws)
        cache = {}
        if self.fusion == "base":   # G_l(W) from the pass that renders x0 (a partial pass when x0 is given)
            if x0 is None:
                x0 = G.synthesis.with_edits(ws, {self.layer: lambda g: cache.setdefault("g_l", g)},
                                            noise_mode=noise_mode)
            else:
                cache["g_l"] = G.synthesis.features(ws, self.layer, noise_mode=noise_mode)
        elif x0 is None:
            x0 = G.synthesis(ws, noise_mode=noise_mode)
        dmap = self.dipn(self.resize(x), self.resize(x0))
        a, b, feat2 = self.dicn(dmap)
        ws_c = ws * (1 + a) + b
        cache["dmap"] = dmap

        def replace(g_l: torch.Tensor) -> torch.Tensor:
            if self.fusion == "compensated":
                cache["g_l"] = g_l
            f_hat = self.dicn.fuse(feat2, cache["g_l"])
            cache["f_hat"], cache["residual"] = f_hat, f_hat - cache["g_l"]
            return f_hat

        image = G.synthesis.with_edits(ws_c, {self.layer: replace}, noise_mode=noise_mode)
        return Compensation(image=image, ws=ws_c, cache=cache)

    def edit(self, G, comp: Compensation, delta_ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Compensate-and-edit: G(W' + delta) with layer l's output G_l(W' + delta) + (F^ - G_l), G_l as fused.

        delta_ws [N, num_ws, w_dim]; with fusion 'compensated' delta 0 gives comp.image back exactly.
        """
        residual = comp.cache["residual"]
        return G.synthesis.with_edits(comp.ws + delta_ws, {self.layer: lambda g: g + residual}, noise_mode=noise_mode)
