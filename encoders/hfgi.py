"""HFGI: distortion consultation with adaptive distortion alignment, a compensation head over a frozen W+ encoder.

"High-Fidelity GAN Inversion for Image Attribute Editing" (Wang et al., CVPR 2022); a compensation head in
the sense of `latentspaces.interfaces.CompensationHead`. This module follows the authors' released code,
which differs from the paper:

    W      = E(x)                           frozen base W+ encoder, ws [N, num_ws, w_dim]
    x0     = G(W)                           initial reconstruction
    D      = x - clamp(x0, -1, 1)           distortion map at the head's input size r (plain difference)
    D'     = ADA(cat[D, I])                 adaptive distortion alignment, I = clamp(x0) for inversion
    gamma, beta = Ec(D')                    consultation encoder, [N, C_l, h_l, h_l] each
    y      = G(W) with conv `layer`'s output f replaced by f * (1 + gamma) + beta

Editing: I = clamp(G(W + delta)) so that the distortion follows the edited geometry; ADA, Ec and the
fusion run again for the edited codes (two generator passes per edit). delta = 0 gives y back exactly.

Training (experiments/training/train_hfgi.py): in the released code ADA reads a randomly
perspective-warped D beside the unwarped G(W), Ec reads ADA's output and the image is fused from it, so
the reconstruction losses train ADA as well as Ec; ADA's L1 alignment loss compares its output with the
unwarped D (`--consult warped`). The trainer's default fuses from ADA of the unwarped D, as at inference,
with the warped D in the alignment loss only (`--consult unwarped`): at CPU budgets it reconstructs
better (the trainer's docstring has the numbers). Inference is the same for both.

Where the paper differs: its Eqs. 4-5 fuse the consultation features into several generator layers
through a learned gate; the released code (and this module) modulates one layer, the output of the
64 x 64 block's first (upsampling) conv at 1024 px (rosinality `convs[6]`).

Sizes (`width` scales every channel count of ADA and of Ec's trunk; 1.0 is the released network):
- ADA: conv3x3 6 -> 16 (BN, PReLU); three stride-2 stages of 3 IR bottlenecks (16 -> 32 -> 48 -> 64);
  a decoder of bilinear x2 upsampling, concatenation with the encoder's map of that size and three IR
  bottlenecks per level (112 -> 64 -> 32 -> 32, 64 -> 32 -> 16 -> 16, 32 -> 16 -> 3 -> 3); raw output
  (no tanh). 596,801 parameters in 295 tensors, as the released `ResidualAligner`.
- Ec: trunk conv3x3 3 -> 32 (BN, PReLU), IR stages 32 -> 48 and 48 -> 64 of 3 bottlenecks each; the
  first bottleneck of the first log2(r / h_l) stages has stride 2 (two at the paper's 256 -> 64; one on
  the 64 px default, whose fused layer is 32 x 32: not in the paper, the same rule); two heads of
  EqualConv3x3 64 -> C_l, scaled LeakyReLU 0.2, EqualConv3x3 C_l -> C_l give gamma and beta (the
  released heads are 512 wide, the channel count of the fused layer; here C_l for any generator).
- Paper size (1024 px generator, r = 256, width 1): ADA 0.60 M and Ec 5.65 M parameters.
- Resizing to r (r = 256 for a 1024 px generator): the target with antialiasing (the released data
  pipeline resizes photos so), the renders G(W) with plain bilinear interpolation as the released code
  does (`rendered_resize='bilinear'`); 'antialias' filters the renders too (files before the option).
- Fused layer, by generator resolution R (`default_hfgi_layer`): b64.conv0 for R >= 128, b{R/2}.conv0
  below (b32.conv0 at 64 px): `encoders.single_layer.default_compensated_layer`, SDIC's rule too.
The last convs of both heads start at zero, so an untrained head returns the base reconstruction exactly.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from latentspaces.interfaces import Compensation

from .config_checks import check_count
from .probing import probe_images
from .single_layer import SingleLayerHead, default_compensated_layer
from .wplus_encoder import BottleneckIR

default_hfgi_layer = default_compensated_layer
RENDERED_RESIZES = ("bilinear", "antialias")


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


def ir_stage(cin: int, cout: int, units: int, stride: int) -> nn.Sequential:
    """`units` IR bottlenecks cin -> cout, the first with `stride` (no squeeze-excitation)."""
    return nn.Sequential(BottleneckIR(cin, cout, stride, se=False),
                         *[BottleneckIR(cout, cout, 1, se=False) for _ in range(units - 1)])


def conv_bn_prelu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout))


class EqualConv2d(nn.Module):
    """3x3 conv with equalized learning rate (StyleGAN2): weight ~ N(0, 1) scaled by 1 / sqrt(fan_in) when used."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = 1 / math.sqrt(cin * kernel * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.weight.shape[-1] // 2)


class ScaledLeakyReLU(nn.Module):
    """leaky_relu(x, 0.2) * sqrt(2): the gain that keeps the activations' scale."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class DistortionAligner(nn.Module):
    """ADA: cat[D, I] [N, 6, r, r] -> aligned distortion map [N, 3, r, r] (raw values); r divisible by 8.

    A U-Net of IR bottlenecks: three stride-2 encoder stages, then per decoder level a bilinear x2
    upsampling, the encoder's map of that size concatenated, and `decoder_units` bottlenecks. The released
    network (`ResidualAligner`) has three per level (112 -> 64 -> 32 -> 32, 64 -> 32 -> 16 -> 16,
    32 -> 16 -> 3 -> 3: 596,801 parameters at width 1.0); `decoder_units=2` drops the last of each level
    (573,344), the form the project's files before the option were trained with.
    """

    def __init__(self, width: float = 1.0, decoder_units: int = 3):
        super().__init__()
        check_count(decoder_units, "ADA's decoder_units (3: the released network)", 2, 3)
        c1, c2, c3, c4 = (_ch(c, width) for c in (16, 32, 48, 64))
        self.stem = conv_bn_prelu(6, c1)
        self.down = nn.ModuleList([ir_stage(c1, c2, 3, 2), ir_stage(c2, c3, 3, 2), ir_stage(c3, c4, 3, 2)])
        levels = ((c4 + c3, c4, c2), (c2 + c2, c2, c1), (c1 + c1, c1, 3))   # (in, middle, out) per level
        self.up = nn.ModuleList([
            nn.Sequential(BottleneckIR(cin, mid, 1, se=False), BottleneckIR(mid, cout, 1, se=False),
                          *([BottleneckIR(cout, cout, 1, se=False)] if decoder_units == 3 else []))
            for cin, mid, cout in levels])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 6 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"ADA takes [N, 6, r, r] with r divisible by 8, got {list(x.shape)}")
        skips = [self.stem(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        u = skips.pop()
        for block in self.up:
            skip = skips.pop()
            u = F.interpolate(u, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            u = block(torch.cat([u, skip], dim=1))
        return u


class ConsultationEncoder(nn.Module):
    """Ec: aligned distortion [N, 3, r, r] -> (gamma, beta) [N, C_l, h_l, h_l] each."""

    def __init__(self, input_size: int, layer_channels: int, layer_resolution: int, width: float = 1.0):
        super().__init__()
        n_down = int(math.log2(input_size // layer_resolution)) if input_size >= layer_resolution else -1
        if n_down not in (0, 1, 2) or layer_resolution * 2**n_down != input_size:
            raise ValueError(f"HFGI's consultation encoder maps an input of {input_size} px to the fused layer's "
                             f"{layer_resolution} px with at most two stride-2 stages; choose input_size = "
                             f"{layer_resolution}, {2 * layer_resolution} or {4 * layer_resolution}")
        c1, c2, c3 = (_ch(c, width) for c in (32, 48, 64))
        self.trunk = nn.Sequential(conv_bn_prelu(3, c1), ir_stage(c1, c2, 3, 2 if n_down >= 1 else 1),
                                   ir_stage(c2, c3, 3, 2 if n_down >= 2 else 1))
        self.scale = nn.Sequential(EqualConv2d(c3, layer_channels), ScaledLeakyReLU(),
                                   EqualConv2d(layer_channels, layer_channels))
        self.shift = nn.Sequential(EqualConv2d(c3, layer_channels), ScaledLeakyReLU(),
                                   EqualConv2d(layer_channels, layer_channels))
        for head in (self.scale, self.shift):  # an untrained head leaves the layer unchanged
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(self, aligned: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(aligned)
        return self.scale(h), self.shift(h)


class HFGI(SingleLayerHead):
    """ADA + Ec for a generator with `num_ws` x `w_dim` codes, modulating the output of conv `layer`.

    Implements `latentspaces.interfaces.CompensationHead`: `compensate(G, x, ws)` takes the frozen base
    encoder's ws (HFGI does not change the codes); `edit(G, comp, delta_ws)` re-aligns the distortion to
    the edited image and fuses again.
    """

    # what files written before each field existed were trained with
    config_before_field = {"ada_decoder_units": 2, "rendered_resize": "antialias"}

    def __init__(
        self,
        num_ws: int,                    # generator's number of w rows
        w_dim: int,                     # generator's w dimensionality
        layer: str,                     # modulated conv layer, e.g. 'b32.conv0' (64 px), 'b64.conv0' (1024 px)
        layer_channels: int,            # channels C_l of that layer's output
        layer_resolution: int,          # spatial size h_l of that layer's output
        input_size: int = 64,           # side r of the distortion map the head sees (the paper: 256)
        width: float = 1.0,             # channel multiplier of ADA and Ec's trunk (1.0: the released sizes)
        ada_decoder_units: int = 3,     # IR bottlenecks per ADA decoder level (3: released; 2: files before the option)
        rendered_resize: str = "bilinear",  # how renders G(W) shrink to r: 'bilinear' (released) or 'antialias'
    ):
        super().__init__(num_ws, w_dim, layer, layer_channels, layer_resolution, input_size, width)
        if rendered_resize not in RENDERED_RESIZES:
            raise ValueError(f"rendered_resize must be one of {RENDERED_RESIZES}, got {rendered_resize!r}")
        self.ada_decoder_units, self.rendered_resize = ada_decoder_units, rendered_resize
        self.ada = DistortionAligner(width, ada_decoder_units)
        self.consultation = ConsultationEncoder(input_size, layer_channels, layer_resolution, width)

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON values (what an encoder file's header stores)."""
        return {**super().config, "ada_decoder_units": self.ada_decoder_units, "rendered_resize": self.rendered_resize}

    def shrink_render(self, rendered: torch.Tensor, antialias: Optional[bool] = None) -> torch.Tensor:
        """clamp(G(W)) [N, 3, R, R] -> [N, 3, r, r] by this head's `rendered_resize` ('bilinear': the released
        code's plain interpolation; 'antialias': filtered first), unless `antialias` says otherwise."""
        if antialias is None:
            antialias = self.rendered_resize == "antialias"
        return super().shrink_render(rendered, antialias)

    def distortion(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """D = x - clamp(x0, -1, 1) at the head's input size, [N, 3, r, r]: the target shrunk with antialiasing
        (as the released data pipeline's image resize does), the render by `shrink_render`."""
        return self.resize(x) - self.shrink_render(x0)

    def modulation(self, dmap: torch.Tensor, rendered: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta) [N, C_l, h_l, h_l] from the distortion map [N, 3, r, r] aligned to `rendered` [N, 3, R, R]."""
        aligned = self.ada(torch.cat([dmap, self.shrink_render(rendered)], dim=1))
        return self.consultation(aligned)

    def probe(self) -> Dict[str, torch.Tensor]:
        """The output check's pass (`encoders.probing`): (gamma, beta) of a fixed distortion and rendered image."""
        device = next(self.parameters()).device
        x, x0 = probe_images(self.input_size, seed=0).to(device), probe_images(self.input_size, seed=1).to(device)
        gamma, beta = self.modulation(self.distortion(x, x0), x0)
        return {"gamma": gamma, "beta": beta}

    def render(self, G, ws: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
               noise_mode: str = "const") -> torch.Tensor:
        """Image [N, 3, R, R] of ws with the fused layer's output f replaced by f * (1 + gamma) + beta."""
        return G.synthesis.with_edits(ws, {self.layer: lambda f: f * (1 + gamma) + beta}, noise_mode=noise_mode)

    def compensate(self, G, x: torch.Tensor, ws: torch.Tensor, x0: Optional[torch.Tensor] = None,
                   noise_mode: str = "const") -> Compensation:
        """x [N, 3, R, R] in [-1, 1], base ws [N, num_ws, w_dim] (x0 = G(ws) when given) -> Compensation with
        the fused image, ws unchanged and cache {'dmap': D, 'gamma', 'beta'}."""
        self.check_codes(G, ws)
        if x0 is None:
            x0 = G.synthesis(ws, noise_mode=noise_mode)
        dmap = self.distortion(x, x0)
        gamma, beta = self.modulation(dmap, x0)
        image = self.render(G, ws, gamma, beta, noise_mode)
        return Compensation(image=image, ws=ws, cache={"dmap": dmap, "gamma": gamma, "beta": beta})

    def edit(self, G, comp: Compensation, delta_ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Images [N, 3, R, R] of comp.ws + delta_ws [N, num_ws, w_dim] with the distortion re-aligned to
        G(comp.ws + delta_ws); delta 0 gives comp.image back (in eval mode)."""
        ws = comp.ws + delta_ws
        self.check_codes(G, ws)
        edited = G.synthesis(ws, noise_mode=noise_mode)
        gamma, beta = self.modulation(comp.cache["dmap"], edited)
        return self.render(G, ws, gamma, beta, noise_mode)
