"""S (StyleSpace): the style vectors (affine outputs) of every layer, flattened into one code."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from .base import DirectionLike, LatentSpace
from .code import Code


class S(LatentSpace):
    """code.s [N, S_dim]: the styles of all layers (G.synthesis.layer_names order) concatenated.

    `slices[layer]` gives each layer's columns. Edits take 's' directions [S_dim]; `layers`
    (ws indices) restricts them to the style layers that read those ws;
    `channel_direction(layer, channel)` is the one-hot direction of a single style channel.
    """

    kind = edit_field = "s"
    ws_layout = "per_layer"

    def __init__(self, G, **kwargs):
        super().__init__(G, **kwargs)
        if self.truncation_psi != 1:
            raise ValueError("S codes are styles, not ws: truncate the ws before S.from_ws instead")
        syn = G.synthesis
        self.layer_names: List[str] = list(syn.layer_names)
        self.slices: Dict[str, slice] = {}
        start = 0
        for name in self.layer_names:
            self.slices[name] = slice(start, start + syn.style_dims[name])
            start += syn.style_dims[name]
        self.dim = start

    def from_ws(self, ws: torch.Tensor) -> Code:
        styles = self.G.synthesis.styles_from_ws(self.G.broadcast(ws))
        return Code(s=torch.cat([styles[n] for n in self.layer_names], dim=1))

    def random(self, n: int, seed: int = 0) -> Code:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(n, self.G.z_dim, generator=gen).to(self.device)
        return self.from_ws(self.G.mapping(z))

    def mean(self, n: int) -> Code:
        return self.from_ws(self.G.w_avg.expand(n, -1))

    def styles(self, code: Code) -> Dict[str, torch.Tensor]:
        """{layer: [N, C]} views of a code."""
        return {n: code.s[:, sl] for n, sl in self.slices.items()}

    def synthesize(self, code: Code, **synthesis_kwargs) -> torch.Tensor:
        kw = {"noise_mode": self.noise_mode, **synthesis_kwargs}
        return self.G.synthesis.synthesize_styles(self.styles(code), **kw)

    def drag_masks(self, code: Code, moved_ws: Sequence[int], move_base: bool = True) -> Dict[str, torch.Tensor]:
        """The style columns of the layers that read a moved ws (`LatentSpace.drag_masks`)."""
        widx, moved = self.G.synthesis.w_index, set(moved_ws)
        mask = torch.zeros(1, self.dim, device=code.s.device)
        for name, sl in self.slices.items():
            if widx[name] in moved:
                mask[:, sl] = 1.0
        if not mask.any():
            raise ValueError(f"a drag in S with moved ws {sorted(moved)} moves no style layer")
        return {"s": mask}

    def channel_direction(self, layer: str, channel: int) -> torch.Tensor:
        """One-hot [S_dim] direction of style channel `channel` of `layer` (StyleSpace edits)."""
        if layer not in self.slices:
            raise KeyError(f"unknown layer {layer!r}; layers: {self.layer_names}")
        sl = self.slices[layer]
        if not 0 <= channel < sl.stop - sl.start:
            raise IndexError(f"{layer} has {sl.stop - sl.start} style channels, got channel {channel}")
        d = torch.zeros(self.dim, device=self.device)
        d[sl.start + channel] = 1.0
        return d

    def edit(self, code: Code, direction: DirectionLike, alpha: float, layers: Optional[Sequence[int]] = None,
             substeps: int = 1) -> Code:
        """S codes are Euclidean: sub-steps sum to one step. `layers` masks the style layers that read those ws."""
        vec, _ = self._direction_rows(direction, None, self.dim)
        if vec.ndim != 1:
            raise ValueError(f"S edits take one flat direction [{self.dim}]")
        if layers is not None:
            widx = self.G.synthesis.w_index
            mask = torch.zeros(self.dim, device=vec.device)
            for name in self.layer_names:
                if widx[name] in layers:
                    mask[self.slices[name]] = 1.0
            vec = vec * mask
        return Code(s=code.s.detach() + alpha * vec)
