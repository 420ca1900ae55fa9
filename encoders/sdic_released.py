"""SDIC as released: the authors' DIPN and DICN, layer for layer, so that their checkpoint loads by renaming.

"Spatial-Contextual Discrepancy Information Compensation for GAN Inversion" (Zhang et al., AAAI 2024), Sec. 3;
a compensation head in the sense of `latentspaces.interfaces.CompensationHead`. `encoders.sdic.SDIC` is this
project's own network for the same method (same formulas, other layers); this module is the network of the
official code (github.com/ZzqLKED/SDIC), inference only, so that the released weights run unchanged:

    W    = E(x)                           frozen base W+ encoder (the release's e4e), ws [N, num_ws, w_dim]
    x0   = clamp(G(W), -1, 1)             initial reconstruction
    D    = DIPN(x_r, x0_r)                discrepancy map [N, 3, r, r]: x_r antialiased, x0_r plain bilinear
    G_l  = output of conv `layer` for W   the paper's G7: rosinality convs[6] = our b64.conv0 at 1024 px
    feat2 = semantic(conv_layer1(D))      [N, C_l, h_l, h_l], h_l = r / 4
    F^   = sigmoid(att(feat2 + G_l)) * feat2 + G_l                    latent-map compensation
    A, B = Affine1d(rows of bilinear(condition_shift(D), s x s))      [N, num_ws, w_dim] each
    W'   = W * (1 + A) + B                                            latent-code compensation
    y    = G(W') with layer l's output replaced by F^ (the RGB skip from below is kept)

Editing, as the released `scripts/inference.py` does it: W'_e = W' + delta, and layer l gets
G_l(W'_e) + (F^ - G_l(W)). At delta = 0 this is G_l(W') + F^ - G_l(W), not F^: the released edit does not give y
back unless W' = W (the training loss's MSE(W', W) keeps the gap small). `encoders.sdic` calls this
`fusion="base"`.

The released form, by part (keys of the release's state dict, which this module's attributes repeat):
- DIPN (`DIP.*`): two separate per-image pyramids `feature1`/`feature2` of conv3x3 + BN + LeakyReLU(0.01)
  (16/24/32/96/160 channels, strides 1, 2, 1, 2, 2); one shared up path `feature_up` (transposed conv 4x4 s2,
  concatenation with the skip, conv3x3 keeping both halves: 192 @ r/4, 64 @ r/2, 32 @ r); a shared 24-channel
  descriptor (`conv`, `desc`). The two descriptors concatenated on channels are the depth axis of a 3-D cost
  volume [N, 1, 48, r, r] (`corr_stem` -> 8 channels); a 3-D hourglass (`hourglass_fusion`) strides depth and
  space by 2 three times (8 -> 16 -> 32 -> 48 channels), fuses the original image's 2-D features on the way up
  (context-geometry fusion, `CGF_*`: cv = sigmoid(att(feat + cv)) * feat + cv, then `agg`) and returns one
  channel, whose 48 depth slices are the 2-D channels of the head `rgb1` + three IR bottlenecks `rgb`
  (raw output, no tanh). No clamp. Built for r divisible by 8 (the skips then match in size).
- DICN (`SAF.*`): `conv_layer1` (conv, BN, PReLU), `semantic` (two stride-2 stages: r -> r / 4 = h_l, to C_l
  channels, no activation after the last conv), `att` (two convs); `condition_shift3` (EqualConv2d 3 -> 18 at r,
  scaled LeakyReLU 0.2, EqualConv2d 18 -> 18), bilinearly resized to 64 x 64 and read row-major as
  18 * 64 * 64 / 512 = 144 rows of w_dim; `aff1d` (`Affine1d(18, 144)`: `sen` to num_ws rows, `att` -> A and
  `att2` -> B).
- Every BasicConv is conv (no bias) + BN + LeakyReLU with slope 0.01 (PyTorch's default), not StyleGAN's 0.2.
- Sub-networks the release builds and saves but whose forward never runs are not built here; their keys are
  `encoders.released.SDIC_UNUSED_KEYS`, which `encoders.released.sdic_from_state` drops (DIP: stem_2, stem_4, spx, spx_2, spx_4, semantic, agg,
  the BN of hourglass_fusion.conv1_up; SAF: aff1, conv1, aff2, aff1d.agg). Any other key is refused.
- Released sizes (FFHQ, 1024 px generator): 18 x 512 ws, b64.conv0 (512 channels at 64 x 64), r = 256,
  `Affine1d(18, 144)`. For cars (512 px generator, 16 ws) the release's README has `Affine1d(18, 144)` edited to
  (16, 144), condition_shift3 keeping its 18 channels: hence `shift_channels` apart from `num_ws`.
- Parameters used by the forward: DIPN 1,713,154 (of 1,887,357 in the release), DICN 7,449,268 (of 21,608,118).

Layer convention: the fused layer is rosinality's `convs[6]` (the loop's `i == 7`: the first, upsampling conv of
the 64 px block, after noise, bias and activation), this project's `b64.conv0`, whose output is replaced as a
whole by F^ (`SynthesisNetwork.with_edits`); `convs[7]` and `to_rgbs[3]` run on it.

Resizing to r: the target with antialiasing (the release's data pipeline resizes photos with PIL), the render
clamp(G(W), -1, 1) with plain bilinear interpolation, align_corners=False, no antialiasing, as the release's
inference does (fine detail of a 1024 px render aliases into the 256 px map; the weights expect it).

Cost on the CPU (2-core AMD EPYC shared with another job, batch 1, no gradients, released sizes, random config-f
1024 px generator): one `compensate` at 1024 px takes 13 s on one thread (21 s on two, contended), of which two
generator passes 9 s, DIPN 2.3 s (its 3-D cost volumes at r = 256 are [1, 8, 48, 256, 256], 100 MB each) and DICN
about 1 s; peak resident memory about 1.5 GB for the whole process (generator weights included), DIPN adding about
0.5 GB over a plain generator pass.

Checked against the official code (its `DIP(192)` and `SpatialAttFus()` built with their own classes, random
weights and BatchNorm statistics, eval mode, batch 2 at 256 px; the state dict saved in the release's layout and
read by `encoders.released.sdic_from_state`): discrepancy map, F^ and W' equal bit for bit (max |diff| 0). End to end at 1024 px
(the official modified rosinality generator, random weights and noise buffers, in the order of the release's
`scripts/inference.py`, against `latentspaces.load_generator` of the same file and `compensate` / `edit`): G7 max
|diff| 8.5e-6, discrepancy map 1.8e-7, F^ 8.6e-6, W' 4.8e-7, fused image 2.7e-5 (values -3.1 .. 5.5), an edited
image 2.5e-5.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from latentspaces.interfaces import Compensation

from .config_checks import check_count
from .single_layer import SingleLayerHead
from .hfgi import EqualConv2d, ScaledLeakyReLU
from .probing import probe_features, probe_images
from .wplus_encoder import BottleneckIR

LEAKY_SLOPE = 0.01   # nn.LeakyReLU()'s default slope, which every conv block of the release uses
Size = Union[int, Tuple[int, ...]]   # a conv's kernel, stride or padding: one int or one per spatial dim

# The release's layout (FFHQ and cars alike): rosinality convs[6] read at 256 px.
SDIC_LAYER, SDIC_LAYER_RESOLUTION, SDIC_INPUT_SIZE = "b64.conv0", 64, 256

def check_shape(x: torch.Tensor, shape: Sequence[Optional[int]], name: str, hint: str = "") -> None:
    """ValueError naming `name` unless x has len(shape) dims and every size that is not None."""
    if not isinstance(x, torch.Tensor) or x.ndim != len(shape) or any(
            s is not None and s != n for s, n in zip(shape, x.shape)):
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must be {want}, got {got}" + (f"; {hint}" if hint else ""))


# ------------------------------------------------------------------------------------------------ building blocks
class ConvBlock(nn.Module):
    """conv (no bias) -> BatchNorm -> LeakyReLU(0.01), 2-D or 3-D, plain or transposed: the release's `BasicConv`
    (keys `conv.weight`, `bn.*`). `norm_act=False` builds the bare conv (the release's last 3-D up conv, whose BN
    it builds but never applies)."""

    CONVS = {(2, False): nn.Conv2d, (2, True): nn.ConvTranspose2d, (3, False): nn.Conv3d, (3, True): nn.ConvTranspose3d}

    def __init__(
        self,
        cin: int,                        # input channels
        cout: int,                       # output channels
        kernel: Size,                    # kernel size, px
        stride: Size = 1,                # stride, px
        padding: Size = 0,               # zero padding, px
        dims: int = 2,                   # 2: images [N, C, H, W]; 3: volumes [N, C, D, H, W]
        transposed: bool = False,        # a transposed (upsampling) conv
        norm_act: bool = True,           # BN and LeakyReLU after the conv
    ):
        super().__init__()
        self.conv = self.CONVS[dims, transposed](cin, cout, kernel, stride, padding, bias=False)
        self.bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(cout) if norm_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.bn is None else F.leaky_relu(self.bn(x), LEAKY_SLOPE)


def conv3x3(cin: int, cout: int, stride: int = 1, dims: int = 2) -> ConvBlock:
    return ConvBlock(cin, cout, 3, stride, 1, dims)


def up4x4(cin: int, cout: int, dims: int = 2, norm_act: bool = True) -> ConvBlock:
    """Transposed conv 4x4, stride 2, padding 1: doubles every spatial dim (depth too in 3-D)."""
    return ConvBlock(cin, cout, 4, 2, 1, dims, transposed=True, norm_act=norm_act)


def plane5x5(channels: int) -> ConvBlock:
    """3-D conv with a (1, 5, 5) kernel: mixes within each depth slice only."""
    return ConvBlock(channels, channels, (1, 5, 5), 1, (0, 2, 2), dims=3)


# ------------------------------------------------------------------------------------------------ DIPN
class FeaturePyramid(nn.Module):
    """One image's encoder (the release's `Feature`): x [N, 3, r, r] -> [16 @ r, 32 @ r/2, 96 @ r/4, 160 @ r/8]."""

    def __init__(self):
        super().__init__()
        self.fe1, self.fe2, self.fe3 = conv3x3(3, 16), conv3x3(16, 24, 2), conv3x3(24, 32)
        self.fe4, self.fe5 = conv3x3(32, 96, 2), conv3x3(96, 160, 2)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        f1 = self.fe1(x)
        f2 = self.fe3(self.fe2(f1))
        f4 = self.fe4(f2)
        return [f1, f2, f4, self.fe5(f4)]


class UpConcat(nn.Module):
    """The release's `Conv2x`: x [N, cin, h, h] -> up4x4 to cout @ 2h, concatenated with skip [N, cout, 2h, 2h],
    conv3x3 keeping the 2 cout channels."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = up4x4(cin, cout), conv3x3(2 * cout, 2 * cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.cat([self.conv1(x), skip], dim=1))


class FeatureUp(nn.Module):
    """The release's `FeatUp`, shared by both images: pyramid -> [32 @ r, 64 @ r/2, 192 @ r/4, 160 @ r/8] (the
    last entry is the pyramid's own)."""

    def __init__(self):
        super().__init__()
        self.deconv8_4, self.deconv4_2, self.deconv2_1 = UpConcat(160, 96), UpConcat(192, 32), UpConcat(64, 16)
        self.conv4 = conv3x3(32, 32)

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        f1, f2, f4, f8 = feats
        u4 = self.deconv8_4(f8, f4)
        u2 = self.deconv4_2(u4, f2)
        return [self.conv4(self.deconv2_1(u2, f1)), u2, u4, f8]


class ContextGeometryFusion(nn.Module):
    """The release's `Context_Geometry_Fusion`: 2-D features [N, im, h, h] into a volume [N, cv, d, h, h]:
    feat = semantic(f) broadcast over depth; cv <- agg(sigmoid(att(feat + cv)) * feat + cv)."""

    def __init__(self, cv_channels: int, im_channels: int):
        super().__init__()
        self.semantic = nn.Sequential(ConvBlock(im_channels, im_channels // 2, 1),
                                      nn.Conv2d(im_channels // 2, cv_channels, 1))
        self.att = nn.Sequential(plane5x5(cv_channels), nn.Conv3d(cv_channels, cv_channels, 1, bias=False))
        self.agg = plane5x5(cv_channels)

    def forward(self, cv: torch.Tensor, feat2d: torch.Tensor) -> torch.Tensor:
        feat = self.semantic(feat2d).unsqueeze(2)
        return self.agg(torch.sigmoid(self.att(feat + cv)) * feat + cv)


class HourglassFusion(nn.Module):
    """The release's `hourglass_fusion(8)`: volume [N, 8, 48, r, r] and the original image's up-path features ->
    [N, 1, 48, r, r]. Three levels down (two 3-D convs each, the first striding depth and space by 2), then up by
    transposed convs, concatenating the level's volume, `agg_*`, and fusing the 2-D features of that level."""

    def __init__(self, c: int = 8):      # c: channels of the entering volume
        super().__init__()

        def level(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(conv3x3(cin, cout, 2, dims=3), conv3x3(cout, cout, dims=3))

        def agg(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(ConvBlock(cin, cout, 1, dims=3), conv3x3(cout, cout, dims=3),
                                 conv3x3(cout, cout, dims=3))

        self.conv1, self.conv2, self.conv3 = level(c, 2 * c), level(2 * c, 4 * c), level(4 * c, 6 * c)
        self.conv3_up, self.conv2_up = up4x4(6 * c, 4 * c, dims=3), up4x4(4 * c, 2 * c, dims=3)
        self.conv1_up = up4x4(2 * c, 1, dims=3, norm_act=False)     # raw: its BN is built in the release, not used
        self.agg_0, self.agg_1 = agg(8 * c, 4 * c), agg(4 * c, 2 * c)
        # 2-D features: the pyramid's 160 @ r/8 and the up path's 192 @ r/4 and 64 @ r/2
        self.CGF_32 = ContextGeometryFusion(6 * c, 160)
        self.CGF_16 = ContextGeometryFusion(4 * c, 192)
        self.CGF_8 = ContextGeometryFusion(2 * c, 64)

    def forward(self, volume: torch.Tensor, feats: List[torch.Tensor]) -> torch.Tensor:
        v1 = self.conv1(volume)                                             # [N, 16, 24, r/2, r/2]
        v2 = self.conv2(v1)                                                 # [N, 32, 12, r/4, r/4]
        v3 = self.CGF_32(self.conv3(v2), feats[3])                          # [N, 48, 6, r/8, r/8]
        v2 = self.CGF_16(self.agg_0(torch.cat([self.conv3_up(v3), v2], dim=1)), feats[2])
        v1 = self.CGF_8(self.agg_1(torch.cat([self.conv2_up(v2), v1], dim=1)), feats[1])
        return self.conv1_up(v1)


class ReleasedDIPN(nn.Module):
    """Discrepancy information prediction (the release's `DIP`): x, x0 [N, 3, r, r] in [-1, 1] -> discrepancy map
    [N, 3, r, r] (raw values), r divisible by 8. Its channel counts are fixed (the 48-deep volume is the two
    24-channel descriptors)."""

    DESCRIPTOR = 24      # channels of each image's descriptor; the volume's depth is twice this

    def __init__(self):
        super().__init__()
        self.feature1, self.feature2 = FeaturePyramid(), FeaturePyramid()   # original, reconstruction
        self.feature_up = FeatureUp()
        self.conv, self.desc = conv3x3(32, 48), nn.Conv2d(48, self.DESCRIPTOR, 1)
        self.corr_stem = conv3x3(1, 8, dims=3)
        self.hourglass_fusion = HourglassFusion(8)
        self.rgb1 = nn.Sequential(conv3x3(2 * self.DESCRIPTOR, 16), nn.Conv2d(16, 16, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.rgb = nn.Sequential(BottleneckIR(16, 3, 1, se=False), BottleneckIR(3, 3, 1, se=False),
                                 BottleneckIR(3, 3, 1, se=False))

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        check_shape(x, [None, 3, None, None], "DIPN's x")
        if x.shape[-1] != x.shape[-2] or x.shape[-1] % 8:
            raise ValueError(f"DIPN reads square images of a side divisible by 8, got {list(x.shape)}")
        check_shape(x0, list(x.shape), "DIPN's x0 (the reconstruction, the shape of x)")
        orig = self.feature_up(self.feature1(x))
        rec = self.feature_up(self.feature2(x0))
        descs = [self.desc(self.conv(f[0])) for f in (orig, rec)]
        volume = self.corr_stem(torch.cat(descs, dim=1).unsqueeze(1))     # [N, 8, 48, r, r]: depth = channels
        cost = self.hourglass_fusion(volume, orig).squeeze(1)              # [N, 48, r, r]
        return self.rgb(self.rgb1(cost))


# ------------------------------------------------------------------------------------------------ DICN
class LatentAffine(nn.Module):
    """The release's `Affine1d(num_ws, rows)`: ws [N, num_ws, w_dim] and rows [N, rows, w_dim] -> W' = W (1 + A) + B,
    A and B [N, num_ws, w_dim] from two branches (`att`, `att2`) over `sen(rows)`; 1-D convs run along w_dim."""

    def __init__(self, num_ws: int, rows: int):
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(num_ws, num_ws, 3, 1, 1), nn.BatchNorm1d(num_ws), nn.LeakyReLU(LEAKY_SLOPE),
                                 nn.Conv1d(num_ws, num_ws, 1, bias=False))

        self.sen = nn.Sequential(nn.Conv1d(rows, rows // 2, 1), nn.BatchNorm1d(rows // 2), nn.LeakyReLU(LEAKY_SLOPE),
                                 nn.Conv1d(rows // 2, num_ws, 1))
        self.att, self.att2 = branch(), branch()

    def forward(self, ws: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        f = self.sen(rows)
        return self.att(f) * ws + ws + self.att2(f)     # the release's order of the sum (same rounding)


class ReleasedDICN(nn.Module):
    """Discrepancy information compensation (the release's `SpatialAttFus`): map D [N, 3, r, r], the fused layer's
    base output G_l [N, C_l, r/4, r/4] and ws [N, num_ws, w_dim] -> (F^ like G_l, W' like ws)."""

    def __init__(
        self,
        num_ws: int = 18,                # w rows the latent branch corrects (the cars release: 16)
        w_dim: int = 512,                # w dimensionality; also the row length of the resized shift map
        layer_channels: int = 512,       # channels C_l of the fused layer
        shift_channels: int = 18,        # channels of condition_shift3 (18 in both releases)
        shift_size: int = 64,            # side s its output is resized to; shift_channels * s^2 / w_dim rows (144)
    ):
        super().__init__()
        rows, left = divmod(shift_channels * shift_size**2, w_dim)
        if left or rows < 2:
            raise ValueError(f"shift_channels * shift_size^2 = {shift_channels * shift_size**2} must be a multiple "
                             f"of w_dim = {w_dim} giving at least 2 rows (the release: 18 * 64^2 / 512 = 144)")
        self.num_ws, self.w_dim, self.shift_size = num_ws, w_dim, shift_size
        c = layer_channels
        self.conv_layer1 = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.PReLU(32))
        self.semantic = nn.Sequential(conv3x3(32, 64, 2), nn.Conv2d(64, 64, 3, 1, 1, bias=False),
                                      conv3x3(64, c, 2), nn.Conv2d(c, c, 3, 1, 1, bias=False))
        self.att = nn.Sequential(conv3x3(c, c), nn.Conv2d(c, c, 3, 1, 1, bias=False))
        self.condition_shift3 = nn.Sequential(EqualConv2d(3, shift_channels), ScaledLeakyReLU(),
                                              EqualConv2d(shift_channels, shift_channels))
        self.aff1d = LatentAffine(num_ws, rows)

    def forward(self, dmap: torch.Tensor, g_l: torch.Tensor, ws: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        check_shape(dmap, [None, 3, None, None], "DICN's discrepancy map")
        feat2 = self.semantic(self.conv_layer1(dmap))
        check_shape(g_l, list(feat2.shape), "G_l", "the fused layer's output at a quarter of the map's side")
        check_shape(ws, [dmap.shape[0], self.num_ws, self.w_dim], "ws")
        f_hat = torch.sigmoid(self.att(feat2 + g_l)) * feat2 + g_l
        shift = F.interpolate(self.condition_shift3(dmap), size=(self.shift_size, self.shift_size), mode="bilinear",
                              align_corners=False)
        rows = shift.reshape(shift.shape[0], -1, self.w_dim)   # row-major: each row is a strip of one channel
        return f_hat, self.aff1d(ws, rows)


# ------------------------------------------------------------------------------------------------ the head
class SDICReleased(SingleLayerHead):
    """DIPN + DICN of the SDIC release over a frozen W+ encoder, replacing conv `layer`'s output.

    Implements `latentspaces.interfaces.CompensationHead`: `compensate(G, x, ws)` takes the base encoder's ws and
    returns W' and the fused image; `edit(G, comp, delta_ws)` is the released compensate-and-edit rule. The defaults
    are the released (FFHQ, 1024 px) sizes; `sdic_from_state` sizes the head from a file.
    """

    def __init__(
        self,
        num_ws: int = 18,                   # generator's number of w rows (18 at 1024 px; the cars release: 16)
        w_dim: int = 512,                   # generator's w dimensionality
        layer: str = SDIC_LAYER,            # the replaced conv layer (b64.conv0: rosinality convs[6])
        layer_channels: int = 512,          # channels C_l of that layer's output
        layer_resolution: int = SDIC_LAYER_RESOLUTION,  # its side h_l, px; must be input_size / 4
        input_size: int = SDIC_INPUT_SIZE,  # side r of the images DIPN reads, px (the release: 256)
        shift_channels: int = 18,           # channels of DICN's condition_shift3 (18 in both releases)
        shift_size: int = 64,               # side s of its resized output; shift_channels * s^2 / w_dim rows (144)
    ):
        super().__init__(num_ws, w_dim, layer, layer_channels, layer_resolution, input_size, width=1.0)
        check_count(shift_channels, "shift_channels", 1, 1024)
        check_count(shift_size, "shift_size", 1, 1024)
        if input_size != 4 * layer_resolution:
            raise ValueError(f"the released DICN reaches the fused layer's side from its input by two stride-2 "
                             f"stages: input_size must be 4 * layer_resolution = {4 * layer_resolution}, "
                             f"got {input_size}")
        self.shift_channels, self.shift_size = shift_channels, shift_size
        self.dipn = ReleasedDIPN()
        self.dicn = ReleasedDICN(num_ws, w_dim, layer_channels, shift_channels, shift_size)   # checks the rows

    @classmethod
    def for_generator(cls, G, layer: Optional[str] = None, input_size: Optional[int] = None, width: float = 1.0,
                      **options) -> "SDICReleased":
        """An untrained released-size head for G at `layer` (default b64.conv0, the release's), reading 4 h_l px."""
        if width != 1.0:
            raise ValueError(f"the released SDIC has no channel multiplier; got width = {width}")
        c, h, _ = G.synthesis.feature_shape(layer or SDIC_LAYER)
        return cls(G.num_ws, G.w_dim, layer or SDIC_LAYER, c, h, input_size or 4 * h, **options)

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON values (what an encoder file's header stores)."""
        config = {k: v for k, v in super().config.items() if k != "width"}   # the released sizes have no multiplier
        return {**config, "shift_channels": self.shift_channels, "shift_size": self.shift_size}

    def check_codes(self, G, ws: torch.Tensor) -> None:
        """ValueError unless G and ws [N, num_ws, w_dim] have this head's code shape and G has its layer's shape."""
        super().check_codes(G, ws)
        want = (self.layer_channels, self.layer_resolution, self.layer_resolution)
        if self.layer not in G.synthesis.feature_layers or tuple(G.synthesis.feature_shape(self.layer)) != want:
            raise ValueError(f"this SDICReleased head replaces {self.layer} of shape {list(want)}; the generator "
                             f"({G.resolution} px) has no such layer")

    def probe(self) -> Dict[str, torch.Tensor]:
        """The output check's pass (`encoders.probing`): DIPN on two fixed images, DICN on its map with fixed
        stand-ins for G_l and ws."""
        device = next(self.parameters()).device
        x, x0 = probe_images(self.input_size, seed=0).to(device), probe_images(self.input_size, seed=1).to(device)
        dmap = self.dipn(x, x0)
        g_l = probe_features(self.layer_channels, self.layer_resolution).to(device)
        ws = torch.randn([1, self.num_ws, self.w_dim], generator=torch.Generator().manual_seed(2)).to(device)
        f_hat, ws_c = self.dicn(dmap, g_l, ws)
        return {"dmap": dmap, "f_hat": f_hat, "ws": ws_c}

    def compensate(self, G, x: torch.Tensor, ws: torch.Tensor, x0: Optional[torch.Tensor] = None,
                   noise_mode: str = "const") -> Compensation:
        """x [N, 3, R, R] in [-1, 1] at the generator's resolution, base ws [N, num_ws, w_dim] (x0 = G(ws)
        [N, 3, R, R] when given) -> Compensation with image y, ws W' and cache {'dmap': D [N, 3, r, r],
        'g_l': G_l(W), 'f_hat': F^, 'residual': F^ - G_l(W)} ([N, C_l, h_l, h_l] each)."""
        self.check_codes(G, ws)
        n, side = ws.shape[0], G.resolution
        check_shape(x, [n, 3, side, side], "x", "targets at the generator's resolution in [-1, 1]")
        cache: Dict[str, torch.Tensor] = {}
        if x0 is None:   # G_l(W) from the pass that renders x0
            x0 = G.synthesis.with_edits(ws, {self.layer: lambda g: cache.setdefault("g_l", g)}, noise_mode=noise_mode)
        else:
            check_shape(x0, [n, 3, side, side], "x0", "G(ws) at the generator's resolution")
            cache["g_l"] = G.synthesis.features(ws, self.layer, noise_mode=noise_mode)
        dmap = self.dipn(self.resize(x), self.shrink_render(x0))
        f_hat, ws_c = self.dicn(dmap, cache["g_l"], ws)
        image = G.synthesis.with_edits(ws_c, {self.layer: lambda g: f_hat}, noise_mode=noise_mode)
        cache.update(dmap=dmap, f_hat=f_hat, residual=f_hat - cache["g_l"])
        return Compensation(image=image, ws=ws_c, cache=cache)

    def edit(self, G, comp: Compensation, delta_ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Images [N, 3, R, R] of W' + delta_ws [N, num_ws, w_dim] with the layer's output G_l(W' + delta) +
        (F^ - G_l(W)), the released rule; delta 0 gives comp.image only where W' = W (see the module docstring)."""
        ws = comp.ws + delta_ws
        self.check_codes(G, ws)
        residual = comp.cache["residual"]
        return G.synthesis.with_edits(ws, {self.layer: lambda g: g + residual}, noise_mode=noise_mode)


# ------------------------------------------------------------------------------------------------ the reader
__all__ = ["LEAKY_SLOPE", "ReleasedDICN", "ReleasedDIPN", "SDICReleased", "SDIC_INPUT_SIZE", "SDIC_LAYER",
           "SDIC_LAYER_RESOLUTION", "check_shape"]
