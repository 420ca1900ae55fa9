"""W+ encoder in the style of e4e (Tov et al. 2021): a base code w0 plus per-layer offsets.

    ws = w_avg + w0 + [0, delta_1, ..., delta_{n-1}]        (n = num_ws; deltas past the stage are 0)

Structure (e4e's Encoder4Editing, with the backbone made configurable):
- backbone: an input conv, then four stages of residual units ('bottleneck_IR', optional
  squeeze-excitation). Three feature maps come out: c1 = end of stage 2 (fine), c2 = end of stage 3,
  c3 = end of stage 4 (coarse). `backbone="ir_se50"` is e4e's IR-SE50 (256 px input, stages of
  3/4/14/3 units, 64/128/256/512 channels, every stage halving); `backbone="small"` is a 4-stage,
  1-unit-per-stage version for the 64 px default model that trains on a 2-core CPU.
- w0 = style_0(c3); the offset of layer i comes from c3 (i < coarse_ind), from
  p2 = up(c3) + lat1(c2) (coarse_ind <= i < middle_ind) or from p1 = up(p2) + lat2(c1) (fine).
  Each style block: log2(spatial) stride-2 3x3 convs + LeakyReLU 0.01, then an equalized linear layer.
  Upsampling in the pyramid is bilinear with align_corners=True (as e4e).
- progressive_stage: how many offsets are active (e4e's progressive training; num_ws - 1 = all).
- codes='rows': pSp's GradualStyleEncoder ("Encoding in Style: a StyleGAN Encoder for Image-to-Image
  Translation", Sec. 3): the same network, each row ws[:, i] = w_avg + style_i(level of i), no shared w0.

`encoders.released` reads the encoder part of an e4e or pSp checkpoint into an ir_se50 WPlusEncoder.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from latentspaces.spaces import Code, LatentSpace

from .config_checks import check_count, check_side
from .probing import probe_images

# (in_channels, depth, units, stride) per stage
CODE_FORMS = ("offsets", "rows")   # e4e's w0 + offsets; pSp's independent rows
BACKBONES = {
    "ir_se50": dict(stages=[(64, 64, 3, 2), (64, 128, 4, 2), (128, 256, 14, 2), (256, 512, 3, 2)], stem=64, se=True,
                    input_size=256),
    "small": dict(stages=[(16, 16, 1, 1), (16, 32, 1, 2), (32, 64, 1, 2), (64, 128, 1, 2)], stem=16, se=False,
                  input_size=64),
}


class SEModule(nn.Module):
    """Squeeze-excitation: x * sigmoid(fc2(relu(fc1(avgpool(x))))) with 1x1 convs, reduction 16."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class BottleneckIR(nn.Module):
    """ArcFace IR unit: BN -> conv3x3 -> PReLU -> conv3x3 (stride) -> BN [-> SE], plus a shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int, se: bool):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if se:
            layers.append(SEModule(depth))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """Linear layer with the equalized learning rate: y = x (w * lr_mul / sqrt(in))^T + b * lr_mul."""

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale, self.lr_mul = lr_mul / math.sqrt(in_dim), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class GradualStyleBlock(nn.Module):
    """[N, in_c, s, s] -> [N, out_dim]: log2(s) stride-2 convs (LeakyReLU 0.01, e4e's) to 1x1, then EqualLinear."""

    def __init__(self, in_c: int, hidden_c: int, out_dim: int, spatial: int):
        super().__init__()
        n = int(math.log2(spatial))
        if 2**n != spatial or n < 1:
            raise ValueError(f"style block spatial size must be a power of two >= 2, got {spatial}")
        layers = []
        for i in range(n):
            layers += [nn.Conv2d(in_c if i == 0 else hidden_c, hidden_c, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(hidden_c, out_dim)
        self.hidden_c = hidden_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.hidden_c))


class WPlusEncoder(nn.Module):
    """x [N, 3, R, R] in [-1, 1] -> ws [N, num_ws, w_dim] (input resized to `input_size`)."""

    def __init__(
        self,
        num_ws: int,                                # generator's number of w rows
        w_dim: int = 512,                           # generator's w dimensionality
        backbone: str = "small",                    # 'small' (64 px, CPU) or 'ir_se50' (e4e, 256 px)
        style_channels: Optional[int] = None,       # hidden channels of the style blocks (default: c3 channels)
        input_size: Optional[int] = None,           # side of the resized input (default: the backbone's)
        coarse_ind: int = 3,                        # layers below this read c3 (e4e: 3)
        middle_ind: int = 7,                        # layers below this (and >= coarse_ind) read p2 (e4e: 7)
        progressive_stage: Optional[int] = None,    # active offsets (default: all, num_ws - 1)
        codes: str = "offsets",                     # 'offsets': w0 + per-layer offsets (e4e); 'rows': each w row
                                                    # from its own style block (pSp's GradualStyleEncoder)
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        spec = BACKBONES[backbone]
        check_count(num_ws, "num_ws", 1, 64)
        check_count(w_dim, "w_dim")
        if input_size is not None:
            check_side(input_size, "input_size", 16)
        if style_channels is not None:
            check_count(style_channels, "style_channels")
        if not 0 <= check_count(coarse_ind, "coarse_ind", 0, 64) <= check_count(middle_ind, "middle_ind", 0, 64):
            raise ValueError(f"coarse_ind {coarse_ind} must not exceed middle_ind {middle_ind}")
        if progressive_stage is not None:
            check_count(progressive_stage, "progressive_stage", 0, num_ws - 1)
        if codes not in CODE_FORMS:
            raise ValueError(f"codes must be one of {CODE_FORMS}, got {codes!r}")
        self.codes = codes
        self.num_ws, self.w_dim, self.backbone = num_ws, w_dim, backbone
        self.input_size = input_size or spec["input_size"]
        self.coarse_ind, self.middle_ind = coarse_ind, middle_ind
        stages = spec["stages"]
        self.input_layer = nn.Sequential(nn.Conv2d(3, spec["stem"], 3, 1, 1, bias=False), nn.BatchNorm2d(spec["stem"]),
                                         nn.PReLU(spec["stem"]))
        units, self._stage_ends, size = [], [], self.input_size
        for cin, depth, n, stride in stages:
            for u in range(n):
                units.append(BottleneckIR(cin if u == 0 else depth, depth, stride if u == 0 else 1, spec["se"]))
            size //= stride
            self._stage_ends.append((len(units) - 1, depth, size))
        self.body = nn.Sequential(*units)
        (_, c1_ch, s1), (_, c2_ch, s2), (_, c3_ch, s3) = self._stage_ends[1:]
        self.style_channels = style_channels or c3_ch
        self.styles = nn.ModuleList()
        for i in range(num_ws):
            spatial = s3 if i < coarse_ind else s2 if i < middle_ind else s1
            self.styles.append(GradualStyleBlock(c3_ch, self.style_channels, w_dim, spatial))
        self.latlayer1 = nn.Conv2d(c2_ch, c3_ch, 1)
        self.latlayer2 = nn.Conv2d(c1_ch, c3_ch, 1)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.progressive_stage = num_ws - 1 if progressive_stage is None else progressive_stage

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON values (what an encoder file's header stores)."""
        return dict(num_ws=self.num_ws, w_dim=self.w_dim, backbone=self.backbone, style_channels=self.style_channels,
                    input_size=self.input_size, coarse_ind=self.coarse_ind, middle_ind=self.middle_ind,
                    progressive_stage=self.progressive_stage, codes=self.codes)

    @classmethod
    def for_generator(cls, G, **kwargs) -> "WPlusEncoder":
        """An (untrained) encoder for G, starting from G's w_avg."""
        enc = cls(G.num_ws, G.w_dim, **kwargs)
        enc.w_avg.copy_(G.w_avg.detach().cpu())
        return enc

    def features(self, x: torch.Tensor):
        """(c1, c2, c3): the ends of backbone stages 2, 3 and 4."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"WPlusEncoder expects images [N, 3, H, W], got {tuple(x.shape)}")
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size)
        x = self.input_layer(x)
        ends = {i for i, _, _ in self._stage_ends[1:]}
        feats = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in ends:
                feats.append(x)
        return tuple(feats)

    def _fpn(self, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor):
        """The feature pyramid (c3, p2, p1) from the backbone maps: p2 = up(c3) + lat1(c2), p1 = up(p2) + lat2(c1)."""
        p2 = F.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=True) + self.latlayer1(c2)
        p1 = F.interpolate(p2, size=c1.shape[-2:], mode="bilinear", align_corners=True) + self.latlayer2(c1)
        return c3, p2, p1

    def pyramid(self, x: torch.Tensor):
        """The FPN maps the style blocks read, coarse to fine: (c3, p2, p1).

        x [N, 3, H, W] in [-1, 1] -> [N, C, s, s] each, s = input_size / 8, / 4, / 2 (C = the last stage's
        channels: 128 x 8/16/32 px for the 'small' 64 px backbone, 512 x 16/32/64 px for ir_se50). These are
        e4e's three pyramid levels, the T_m of GradStyle's residual modules.
        """
        return self._fpn(*self.features(x))

    def probe(self) -> Dict[str, torch.Tensor]:
        """The output check's pass (`encoders.probing`): ws and the pyramid of a fixed image."""
        ws, (c3, p2, p1) = self.forward_with_pyramid(probe_images(self.input_size).to(self.w_avg.device))
        return {"ws": ws, "c3": c3, "p2": p2, "p1": p1}

    def forward_with_pyramid(self, x: torch.Tensor):
        """(ws [N, num_ws, w_dim], pyramid (c3, p2, p1)) from one pass of the backbone."""
        maps = self.pyramid(x)
        return self._styles(maps), maps

    def _styles(self, maps) -> torch.Tensor:
        c3, p2, p1 = maps
        if self.codes == "rows":   # pSp: every row its own, from the level of its layer
            rows = [style(c3 if i < self.coarse_ind else p2 if i < self.middle_ind else p1)
                    for i, style in enumerate(self.styles)]
            return torch.stack(rows, dim=1) + self.w_avg
        w0 = self.styles[0](c3)
        ws = [w0]
        for i in range(1, self.num_ws):
            if i > self.progressive_stage:
                ws.append(w0)
                continue
            src = c3 if i < self.coarse_ind else p2 if i < self.middle_ind else p1
            ws.append(w0 + self.styles[i](src))
        return torch.stack(ws, dim=1) + self.w_avg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_pyramid(x)[0]

    @staticmethod
    def deltas(ws: torch.Tensor) -> torch.Tensor:
        """The per-layer offsets ws[:, i] - ws[:, 0], [N, num_ws - 1, w_dim]."""
        return ws[:, 1:] - ws[:, :1]

    def init_code(self, space: LatentSpace, targets: torch.Tensor) -> Code:
        """HybridInverter initialisation for spaces built from ws (W+, W, S, P_N, F/W+).

        Single-code spaces (W, PN without plus) start from the mean of the per-layer ws; S starts from the
        styles of the per-layer ws.
        """
        if space.G.num_ws != self.num_ws or space.G.w_dim != self.w_dim:
            raise ValueError(f"this encoder predicts {self.num_ws} x {self.w_dim} ws; the space's generator has "
                             f"{space.G.num_ws} x {space.G.w_dim}")
        if space.ws_layout == "none":
            raise ValueError(f"a W+ encoder cannot initialise {space.name} (its codes are not built from ws); use "
                             "encoders.FEncoder for F spaces or init='mean' for Z-type spaces")
        was_training = self.training
        self.eval()
        try:
            ws = self(targets)
        finally:
            self.train(was_training)
        if space.ws_layout == "shared":
            ws = ws.mean(dim=1)  # one code for all layers: the mean of the per-layer ws
        return space.from_ws(ws)


