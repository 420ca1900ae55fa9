"""ReGANIE's rectifying network: a second, small generator that re-renders an inversion with the lost detail.

"ReGANIE: Rectifying GAN Inversion Errors for Accurate Real Image Editing" (Li et al.), Sec. 3 and
Algorithm 1, built after "Swapping Autoencoder for Deep Image Manipulation" (Park et al. 2020); a
re-rendering compensation head in the sense of `latentspaces.interfaces.CompensationHead` (`layers = ()`:
it injects nothing into G, its `compensate` and `edit` return images). Inference:
    ws   = E(x)                         frozen base W+ encoder, [N, num_ws, w_dim]
    x^   = G(ws)                        the inversion, [N, 3, R, R] in ~[-1, 1]
    dX   = x - x^                       the inversion error (residual), [N, 3, R, R] in ~[-2, 2]
    f_x  = E_p(x^)                      spatial map of the rendered image, [N, C, R / 2^d, R / 2^d]
    sp, gl = E_d(dX)                    (Eq. 4) spatial code [N, sp_channels, R / 2^d, R / 2^d], global [N, gl_dim]
    x_r  = G_p(f_x, sp, gl)             the rectified reconstruction, [N, 3, R, R]
G_p alternates spatially modulated layers (Eq. 7)   f <- conv(f . m_sp) + b,  m_sp = 1 + A_sp(sp) resized to f,
and globally modulated layers (Eq. 8)                f <- conv(f . m_gl) + b,  m_gl = 1 + A_gl(gl) per channel,
each followed by LeakyReLU 0.2, with a 2x upsampling before each resolution above R / 2^d, and a 1x1
to-RGB layer at R.

Editing (Algorithm 1): y^ = G(ws + delta) and y_r = G_p(E_p(y^), sp, gl) with the residual codes (sp, gl)
of the reconstruction cached, so that the detail moves with the edit. Delta 0 recomputes x^ and gives
comp.image back exactly (the network is deterministic).

Output modes (`output`):
- 'direct': y = G_p(...), the paper's.
- 'residual': y = y^ + G_p(...) with the to-RGB layer zero-initialised, so an untrained network is the
  identity on the rendered image. Not in the paper: our choice, offered for testing and short trainings.
  The shipped `default-reganie` is a residual-mode network (no time was left for a full direct-mode
  training on CPU; experiments/training/train_reganie.py).

The supplement with the exact architecture is not public; every choice below is not in the paper: our choice.
- Channel widths `channels` {resolution: channels} shared by E_p, E_d and G_p at each resolution
  (default {64: 32, 32: 48, 16: 64} for the 64 px default; 441,187 parameters), `sp_channels` 32,
  `gl_dim` 64, `downsamplings` 2 at 64 px (the paper uses 4 at 512 px). Other generators
  (`default_reganie_sizes`): 4 halvings from 512 px up, widths 32, 48, 64, 96, 128 from R down.
- E_p and E_d: 3x3 stem conv at R, then per downsampling a stride-2 3x3 conv and a 3x3 conv, LeakyReLU 0.2,
  no normalisation (Swapping Autoencoder uses residual blocks; plain convs keep the network small).
  E_d's spatial code: a 1x1 conv at R / 2^d; its global code: two more stride-2 convs, a global average
  pool and a linear layer. The residual dX enters E_d unscaled.
- Modulation: m = 1 + A(code) (A a 1x1 conv for sp, bilinearly resized to each layer; a linear layer for
  gl), so an untrained modulation is near 1; no weight demodulation (Eq. 7 and 8 show none).
- Decoder: one spatially and one globally modulated 3x3 conv per resolution, bilinear 2x upsampling,
  channels from `channels` at each resolution.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from latentspaces.interfaces import Compensation

from .config_checks import check_count, check_side
from .probing import probe_images

OUTPUT_MODES = ("direct", "residual")
DEFAULT_CHANNELS = {64: 32, 32: 48, 16: 64}


WIDTHS_BY_HALVING = (32, 48, 64, 96, 128)   # channels at R, R/2, R/4, ... (the first three: DEFAULT_CHANNELS at 64 px)


def default_reganie_sizes(resolution: int, downsamplings: Optional[int] = None) -> Tuple[int, Dict[int, int]]:
    """(downsamplings, channels) for an R px generator: d = log2(R) - 5 clamped to [2, 4] (2 at 64 px, the
    default model's; 4 at 512 and 1024 px, the paper's at 512 px), channels WIDTHS_BY_HALVING[i] at R / 2^i
    ({64: 32, 32: 48, 16: 64} at 64 px; {1024: 32, 512: 48, 256: 64, 128: 96, 64: 128} at 1024 px)."""
    if downsamplings is None:
        downsamplings = min(4, max(2, int(math.log2(resolution)) - 5))
    if not 1 <= downsamplings < len(WIDTHS_BY_HALVING):
        raise ValueError(f"downsamplings must be in [1, {len(WIDTHS_BY_HALVING) - 1}] for the default widths, got "
                         f"{downsamplings}; pass channels= for more")
    return downsamplings, {resolution >> i: WIDTHS_BY_HALVING[i] for i in range(downsamplings + 1)}


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _assert_image(x: torch.Tensor, name: str, size: int) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (size, size):
        raise ValueError(f"{name} must be images [N, 3, {size}, {size}] in [-1, 1] (x / 127.5 - 1 for uint8 "
                         f"pixels), got {tuple(x.shape)}")


class ConvEncoder(nn.Module):
    """Image [N, 3, R, R] -> map [N, channels[R / 2^d], R / 2^d, R / 2^d]: stem, then d x (stride-2 conv, conv)."""

    def __init__(self, resolution: int, downsamplings: int, channels: Mapping[int, int]):
        super().__init__()
        self.stem = nn.Conv2d(3, channels[resolution], 3, 1, 1)
        blocks, r = [], resolution
        for _ in range(downsamplings):
            blocks.append(nn.ModuleList([nn.Conv2d(channels[r], channels[r // 2], 3, 2, 1),
                                         nn.Conv2d(channels[r // 2], channels[r // 2], 3, 1, 1)]))
            r //= 2
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = _act(self.stem(x))
        for down, conv in self.blocks:
            f = _act(conv(_act(down(f))))
        return f


class ResidualEncoder(nn.Module):
    """E_d (Eq. 4): residual dX [N, 3, R, R] -> spatial code sp [N, sp_channels, r, r] (r = R / 2^d) and
    global code gl [N, gl_dim]."""

    def __init__(self, resolution: int, downsamplings: int, channels: Mapping[int, int], sp_channels: int,
                 gl_dim: int):
        super().__init__()
        self.trunk = ConvEncoder(resolution, downsamplings, channels)
        c = channels[resolution >> downsamplings]
        self.to_sp = nn.Conv2d(c, sp_channels, 1)
        self.to_gl = nn.Sequential(nn.Conv2d(c, c, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(c, c, 3, 2, 1),
                                   nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, gl_dim))

    def forward(self, dx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(dx)
        return self.to_sp(f), self.to_gl(f)


class SpatialModConv(nn.Module):
    """Eq. 7: f <- conv(f . (1 + A(sp))) + b, sp resized to f's size; f [N, cin, h, h] -> [N, cout, h, h]."""

    def __init__(self, cin: int, cout: int, sp_channels: int):
        super().__init__()
        self.affine = nn.Conv2d(sp_channels, cin, 1)
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def modulation(self, f: torch.Tensor, sp: torch.Tensor) -> torch.Tensor:
        """The per-pixel, per-channel factor [N, cin, h, h]."""
        if sp.shape[-1] != f.shape[-1]:
            sp = F.interpolate(sp, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return 1 + self.affine(sp)

    def forward(self, f: torch.Tensor, sp: torch.Tensor) -> torch.Tensor:
        return self.conv(f * self.modulation(f, sp))


class GlobalModConv(nn.Module):
    """Eq. 8: f <- conv(f . (1 + A(gl))) + b, one factor per channel; f [N, cin, h, h] -> [N, cout, h, h]."""

    def __init__(self, cin: int, cout: int, gl_dim: int):
        super().__init__()
        self.affine = nn.Linear(gl_dim, cin)
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def modulation(self, gl: torch.Tensor) -> torch.Tensor:
        """The per-channel factor [N, cin, 1, 1]."""
        return (1 + self.affine(gl))[:, :, None, None]

    def forward(self, f: torch.Tensor, gl: torch.Tensor) -> torch.Tensor:
        return self.conv(f * self.modulation(gl))


class RectifyingDecoder(nn.Module):
    """G_p: f_x [N, C, r, r] with (sp, gl) -> image [N, 3, R, R]; per resolution a spatially then a globally
    modulated conv, 2x bilinear upsampling between resolutions, a 1x1 to-RGB at R."""

    def __init__(self, resolution: int, downsamplings: int, channels: Mapping[int, int], sp_channels: int,
                 gl_dim: int):
        super().__init__()
        r = resolution >> downsamplings
        self.resolutions = [r << i for i in range(downsamplings + 1)]
        sp_layers, gl_layers, cin = [], [], channels[r]
        for res in self.resolutions:
            sp_layers.append(SpatialModConv(cin, channels[res], sp_channels))
            gl_layers.append(GlobalModConv(channels[res], channels[res], gl_dim))
            cin = channels[res]
        self.spatial, self.glob = nn.ModuleList(sp_layers), nn.ModuleList(gl_layers)
        self.to_rgb = nn.Conv2d(cin, 3, 1)

    def forward(self, f: torch.Tensor, sp: torch.Tensor, gl: torch.Tensor) -> torch.Tensor:
        for i, (s_layer, g_layer) in enumerate(zip(self.spatial, self.glob)):
            if i > 0:
                f = F.interpolate(f, scale_factor=2, mode="bilinear", align_corners=False)
            f = _act(g_layer(_act(s_layer(f, sp)), gl))
        return self.to_rgb(f)


class ReGANIE(nn.Module):
    """The rectifying network (E_p, E_d, G_p) for a generator of `resolution` px with `num_ws` x `w_dim` codes.

    Implements `latentspaces.interfaces.CompensationHead` as a re-rendering head (`layers = ()`):
    `compensate(G, x, ws)` takes the frozen base encoder's ws; `edit(G, comp, delta_ws)` re-renders the
    edited inversion with the cached residual codes. `forward(rendered, residual)` is the network alone.
    """

    layers: Tuple[str, ...] = ()

    def __init__(
        self,
        num_ws: int,                              # generator's number of w rows
        w_dim: int,                               # generator's w dimensionality
        resolution: int = 64,                     # side R of the generator's images (and of the network's output)
        downsamplings: int = 2,                   # d: E_p's map is R / 2^d (2 at 64 px; the paper: 4 at 512 px)
        channels: Optional[Mapping[int, int]] = None,  # {res: channels}, R down to R / 2^d (None: DEFAULT_CHANNELS)
        sp_channels: int = 32,                    # channels of E_d's spatial code sp
        gl_dim: int = 64,                         # length of E_d's global code gl
        output: str = "direct",                   # 'direct' (the paper's) or 'residual' (y^ + G_p(...))
    ):
        super().__init__()
        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}, got {output!r}")
        check_count(num_ws, "num_ws", 1, 64)
        check_count(w_dim, "w_dim")
        check_side(resolution, "resolution", 16)
        check_count(downsamplings, "downsamplings", 1, 8)
        check_count(sp_channels, "sp_channels"), check_count(gl_dim, "gl_dim")
        low = resolution >> downsamplings
        if downsamplings < 1 or low < 4 or low << downsamplings != resolution:
            raise ValueError(f"resolution {resolution} must be a multiple of 2^downsamplings with R / 2^d >= 4 "
                             f"(the global code takes two more halvings), got downsamplings={downsamplings}")
        chans = {int(k): int(v) for k, v in (channels or DEFAULT_CHANNELS).items()}
        needed = [resolution >> i for i in range(downsamplings + 1)]
        missing = [r for r in needed if r not in chans]
        if missing:
            raise ValueError(f"channels needs an entry for every resolution {needed}; missing {missing}")
        self.num_ws, self.w_dim, self.resolution, self.downsamplings = num_ws, w_dim, resolution, downsamplings
        self.channels = {r: chans[r] for r in needed}
        self.sp_channels, self.gl_dim, self.output = sp_channels, gl_dim, output
        self.e_p = ConvEncoder(resolution, downsamplings, self.channels)
        self.e_d = ResidualEncoder(resolution, downsamplings, self.channels, sp_channels, gl_dim)
        self.g_p = RectifyingDecoder(resolution, downsamplings, self.channels, sp_channels, gl_dim)
        if output == "residual":
            nn.init.zeros_(self.g_p.to_rgb.weight)
            nn.init.zeros_(self.g_p.to_rgb.bias)

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON values (what an encoder file's header stores)."""
        return dict(num_ws=self.num_ws, w_dim=self.w_dim, resolution=self.resolution,
                    downsamplings=self.downsamplings, channels={str(k): v for k, v in self.channels.items()},
                    sp_channels=self.sp_channels, gl_dim=self.gl_dim, output=self.output)

    @classmethod
    def for_generator(cls, G, downsamplings: Optional[int] = None, channels: Optional[Mapping[int, int]] = None,
                      **kwargs) -> "ReGANIE":
        """A network sized for G (num_ws, w_dim, resolution); downsamplings and channels default to
        `default_reganie_sizes(G.resolution)`; kwargs are the other constructor arguments."""
        d, chans = default_reganie_sizes(G.resolution, downsamplings)
        return cls(G.num_ws, G.w_dim, G.resolution, downsamplings=d, channels=channels or chans, **kwargs)

    def residual_codes(self, residual: torch.Tensor) -> Dict[str, torch.Tensor]:
        """E_d (Eq. 4): residual [N, 3, R, R] -> {'sp': [N, sp_channels, r, r], 'gl': [N, gl_dim]}."""
        sp, gl = self.e_d(residual)
        return {"sp": sp, "gl": gl}

    def render(self, rendered: torch.Tensor, codes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """G_p(E_p(rendered), sp, gl) [N, 3, R, R] (plus `rendered` in residual mode)."""
        out = self.g_p(self.e_p(rendered), codes["sp"], codes["gl"])
        return rendered + out if self.output == "residual" else out

    def forward(self, rendered: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The rectified image [N, 3, R, R] of a rendered image and a residual, both [N, 3, R, R]."""
        return self.render(rendered, self.residual_codes(residual))

    def _check(self, G, ws: torch.Tensor) -> None:
        if G.num_ws != self.num_ws or G.w_dim != self.w_dim or G.resolution != self.resolution:
            raise ValueError(f"this ReGANIE head is for a {self.resolution} px generator with {self.num_ws} x "
                             f"{self.w_dim} ws; the generator is {G.resolution} px with {G.num_ws} x {G.w_dim}")
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")

    def bind(self, base: nn.Module) -> "ReGANIE":
        """ReGANIE reads only ws and the images: nothing to keep from the base encoder; returns self (`CompensationHead.bind`)."""
        return self

    def probe(self) -> Dict[str, torch.Tensor]:
        """The output check's pass (`encoders.probing`): the residual codes of a fixed residual and the image
        rendered from them."""
        device = next(self.parameters()).device
        x, x0 = probe_images(self.resolution, seed=0).to(device), probe_images(self.resolution, seed=1).to(device)
        codes = self.residual_codes(x - x0)
        return {**codes, "image": self.render(x0, codes)}

    def compensate(self, G, x: torch.Tensor, ws: torch.Tensor, x0: Optional[torch.Tensor] = None,
                   noise_mode: str = "const") -> Compensation:
        """x [N, 3, R, R] in [-1, 1], base ws [N, num_ws, w_dim] (x0 = G(ws) when given) -> Compensation with
        image x_r, ws unchanged and cache {'sp', 'gl'} (the residual codes) and 'rendered' (x^)."""
        self._check(G, ws)
        _assert_image(x, "targets x", self.resolution)
        if x0 is None:
            x0 = G.synthesis(ws, noise_mode=noise_mode)
        codes = self.residual_codes(x - x0)
        image = self.render(x0, codes)
        return Compensation(image=image, ws=ws, cache={**codes, "rendered": x0})

    def edit(self, G, comp: Compensation, delta_ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """y_r = G_p(E_p(G(comp.ws + delta_ws)), cached sp, gl), [N, 3, R, R]; delta 0 gives comp.image back."""
        self._check(G, comp.ws)
        y0 = G.synthesis(comp.ws + delta_ws, noise_mode=noise_mode)
        return self.render(y0, comp.cache)
