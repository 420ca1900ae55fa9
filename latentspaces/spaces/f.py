"""F/W+, F/W+(P_N), F/Z, F/Z+: a base feature f at an early layer plus detail codes for the layers above.

f [N, C, h, w] replaces everything below the F layer (BDInvert); the coarse RGB skip from below is
dropped (zero). The detail codes drive the layers above: per-layer w's (F/W+), per-layer z's on
the sphere (F/Z+), or one z (F/Z). Edits move only the detail codes.

Default F layer (`default_f_layer`): the first (upsampling) conv of the 16x16 block, 'b16.conv0',
for generators of 128 px and above (BDInvert's choice at 1024 px); of the 8x8 block, 'b8.conv0',
below that (the 64 px default model). Pass `layer=` to choose another conv layer.

F's size decides what the space can do: BDInvert's f at 1024 px (512 x 16 x 16 = 131,072 numbers) holds
4.2% of the image's 3 x 1024 x 1024 numbers, so it cannot copy the image and the detail codes still
matter. On small generators the same rule gives a much larger share (256 x 8 x 8 = 16,384 numbers, 133%
of a 64 px image's 12,288 on the default model): an f that holds as many numbers as the image can
reconstruct nearly anything, and edits, which move only the detail codes, change the image less.
`f_numbers` and `f_share` state it; `repr` and the comparison tables print it.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from .base import LatentSpace, random_sphere
from .code import Code
from .pn import PNStats
from .w import pn_penalty
from .z import mean_z


def default_f_layer(G) -> str:
    """The F layer of a generator when none is given: BDInvert's b16.conv0 (512 x 16 x 16 at 1024 px) from
    128 px up, b8.conv0 below (the 64 px default model's); ValueError under 8 px."""
    if G.resolution >= 128:
        return "b16.conv0"
    if G.resolution >= 8:
        return "b8.conv0"
    raise ValueError(f"F spaces need a generator of 8 px or more, got {G.resolution}")


def f_size_note(G, layer: Optional[str] = None) -> str:
    """'f at b16.conv0: 512x16x16 = 131,072 numbers, 4.2% of the image's' for G's F layer (default_f_layer)."""
    layer = layer or default_f_layer(G)
    shape = G.synthesis.feature_shape(layer)
    numbers = math.prod(shape)
    share = numbers / (G.img_channels * G.resolution ** 2)
    return f"f at {layer}: {'x'.join(map(str, shape))} = {numbers:,} numbers, {100 * share:.1f}% of the image's"


class _FSpace(LatentSpace):
    base_fields = ("f",)  # regularised towards the encoder's f0 by the inverter ("Revisiting Latent Space of GAN Inversion", Eq. 1)

    def __init__(self, G, layer: Optional[str] = None, **kwargs):
        """layer: conv layer whose output is the base code f (default: default_f_layer(G))."""
        super().__init__(G, **kwargs)
        self.layer = self.feature_layer = layer or default_f_layer(G)
        self.f_shape = G.synthesis.feature_shape(self.layer)
        self.code_layers = G.synthesis.w_indices_after(self.layer)

    @property
    def f_numbers(self) -> int:
        """Numbers in one base code f (C x h x w)."""
        return math.prod(self.f_shape)

    @property
    def f_share(self) -> float:
        """f_numbers as a share of one image's numbers (img_channels x R x R): 0.042 for BDInvert at 1024 px."""
        return self.f_numbers / (self.G.img_channels * self.G.resolution ** 2)

    def __repr__(self) -> str:
        return f"{self.name}(resolution={self.G.resolution}, {f_size_note(self.G, self.layer)})"

    # detail ws for the layers above, as a full [N, num_ws, w_dim] (rows below the F layer are unused)
    def _detail_ws(self, code: Code) -> torch.Tensor:
        raise NotImplementedError

    def to_ws(self, code: Code) -> torch.Tensor:
        rows = self._detail_ws(code)
        ws = rows.new_zeros(rows.shape[0], self.G.num_ws, self.G.w_dim)
        ws[:, self.code_layers] = rows
        return ws

    def synthesize(self, code: Code, **synthesis_kwargs) -> torch.Tensor:
        kw = {"noise_mode": self.noise_mode, **synthesis_kwargs}
        return self.G.synthesis.from_feature(code.f, self._truncate(self.to_ws(code)), self.layer, **kw)

    def feature_of(self, ws: torch.Tensor) -> torch.Tensor:
        """G's own base feature for ws [N, num_ws, w_dim] (or w [N, w_dim])."""
        return self.G.synthesis.features(self._truncate(self.G.broadcast(ws)), self.layer, noise_mode=self.noise_mode)

    def from_feature(self, f: torch.Tensor, detail: Optional[Code] = None) -> Code:
        """A code from a base feature (e.g. an encoder's f0) and detail codes (default: the space's mean)."""
        if tuple(f.shape[1:]) != self.f_shape:
            raise ValueError(f"{self.name} base code f must be [N, {', '.join(map(str, self.f_shape))}] at "
                             f"{self.layer}, got {tuple(f.shape)}")
        detail = detail or self.mean(f.shape[0])
        return Code(f=f, **{self.edit_field: detail[self.edit_field].to(f.device)})


class FWPlus(_FSpace):
    """f + per-layer w's [N, n_detail, w_dim] for the layers above the F layer; optional P_N penalty."""

    kind = edit_field = "w"
    per_layer, ws_layout = True, "per_layer"

    def __init__(self, G, layer: Optional[str] = None, pn: Optional[PNStats] = None, pn_lambda: float = 0.001, **kwargs):
        super().__init__(G, layer, **kwargs)
        self.pn, self.pn_lambda = pn, pn_lambda

    def _detail_ws(self, code: Code) -> torch.Tensor:
        return code.w

    def random(self, n: int, seed: int = 0) -> Code:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        return self.from_ws(self.G.mapping(torch.randn(n, self.G.z_dim, generator=gen).to(self.device)))

    def mean(self, n: int) -> Code:
        return self.from_ws(self.G.w_avg.expand(n, -1))

    def from_ws(self, ws: torch.Tensor) -> Code:
        ws = self.G.broadcast(ws)
        return Code(f=self.feature_of(ws), w=ws[:, self.code_layers].clone())

    def penalty(self, code: Code) -> Dict[str, torch.Tensor]:
        return pn_penalty(self.pn, self.pn_lambda, code.w)


class FWPlusPN(FWPlus):
    """F/W+(P_N): F/W+ whose detail ws carry the P_N penalty pn_lambda * mean(v^2), the F/W+ baseline of
    "Revisiting Latent Space of GAN Inversion" (Table 1) and BDInvert's space.

    The weight defaults to 0.001 (Barbershop's, the one this project's P_N and W+(P_N) use); BDInvert
    uses 0.01: pass pn_lambda=0.01 for it.
    """

    uses_pn_stats = True

    def __init__(
        self,
        G,
        layer: Optional[str] = None,            # conv layer of the base code f (default: default_f_layer(G))
        stats: Optional[PNStats] = None,        # fitted P_N statistics (fitted with n_samples and cached when None)
        pn_lambda: float = 0.001,               # weight of the P_N penalty on the detail ws
        n_samples: int = 1_000_000,             # mapping samples for the fit when stats is None
        **kwargs,
    ):
        stats = (stats or PNStats.fit(G, n_samples=n_samples)).to(G.w_avg.device)
        super().__init__(G, layer, pn=stats, pn_lambda=pn_lambda, **kwargs)


class FZPlus(_FSpace):
    """f + per-layer z's [N, n_detail, z_dim] on the sphere, each mapped separately (F/Z+)."""

    kind = edit_field = "z"
    per_layer = True
    spherical_fields = ("z",)

    def _detail_ws(self, code: Code) -> torch.Tensor:
        return self.G.mapping(code.z)

    def from_z(self, z: torch.Tensor) -> Code:
        """Codes whose images are G(z) for z [N, z_dim] on the sphere: f of G(z) and z in every detail row."""
        f = self.feature_of(self.G.mapping(z))
        return Code(f=f, z=z[:, None].expand(-1, len(self.code_layers), -1).clone())

    def random(self, n: int, seed: int = 0) -> Code:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        return self.from_z(random_sphere((n, self.G.z_dim), self.radius, gen, self.device))

    def mean(self, n: int) -> Code:
        return self.from_z(mean_z(self).expand(n, -1))


class FZ(FZPlus):
    """f + one z [N, z_dim] on the sphere shared by all detail layers (F/Z)."""

    per_layer = False

    def _detail_ws(self, code: Code) -> torch.Tensor:
        return self.G.mapping(code.z)[:, None].expand(-1, len(self.code_layers), -1)

    def from_z(self, z: torch.Tensor) -> Code:
        """Codes whose images are G(z) for z [N, z_dim] on the sphere: f of G(z) and z."""
        return Code(f=self.feature_of(self.G.mapping(z)), z=z.clone())
