"""What the compensation heads that work on one generator layer share (SDIC, HFGI).

Both read the target and the base reconstruction at an input size r, and change the output of one conv
layer of the synthesis network: the 64 x 64 block's first (upsampling) conv at 1024 px, the layer the
papers name (SDIC's G7, HFGI's rosinality `convs[6]`). `default_compensated_layer` applies that rule
to any resolution; `SingleLayerHead` holds the layer's shape, the head's size fields, its config,
the generator and code checks and the input resize.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config_checks import check_count, check_fraction, conv_layer_resolution


def default_compensated_layer(G) -> str:
    """b64.conv0 for generators of 128 px and more (the papers' layer at 1024 px), b{R/2}.conv0 below
    (b32.conv0 on the 64 px default)."""
    return "b64.conv0" if G.resolution >= 128 else f"b{G.resolution // 2}.conv0"


class SingleLayerHead(nn.Module):
    """A compensation head for a generator with `num_ws` x `w_dim` codes that changes conv `layer`'s output.

    Subclasses build their networks after `super().__init__(...)` and implement `compensate` / `edit`
    (`latentspaces.interfaces.CompensationHead`).
    """

    def __init__(
        self,
        num_ws: int,                    # generator's number of w rows
        w_dim: int,                     # generator's w dimensionality
        layer: str,                     # the conv layer, e.g. 'b32.conv0' (64 px), 'b64.conv0' (1024 px)
        layer_channels: int,            # channels of that layer's output
        layer_resolution: int,          # spatial size of that layer's output, px
        input_size: int = 64,           # side r of the images the head reads (the papers: 256)
        width: float = 1.0,             # channel multiplier of the head's networks (1.0: the papers' sizes)
    ):
        super().__init__()
        check_count(num_ws, "num_ws", 1, 64)
        check_count(w_dim, "w_dim")
        check_count(layer_channels, "layer_channels")
        if conv_layer_resolution(layer) != layer_resolution:
            raise ValueError(f"layer {layer!r} puts out {conv_layer_resolution(layer)} px features, not "
                             f"layer_resolution = {layer_resolution}")
        check_count(input_size, "input_size", 16, 1024)   # SDIC also needs a power-of-two multiple of the layer's side
        check_fraction(width, "width", 0.0, 8.0)
        self.num_ws, self.w_dim, self.layer = num_ws, w_dim, layer
        self.layer_channels, self.layer_resolution = layer_channels, layer_resolution
        self.input_size, self.width = input_size, width

    @property
    def layers(self) -> Tuple[str, ...]:
        """The generator layers this head changes (one)."""
        return (self.layer,)

    @property
    def config(self) -> dict:
        return dict(num_ws=self.num_ws, w_dim=self.w_dim, layer=self.layer, layer_channels=self.layer_channels,
                    layer_resolution=self.layer_resolution, input_size=self.input_size, width=self.width)

    @classmethod
    def for_generator(cls, G, layer: Optional[str] = None, input_size: Optional[int] = None, width: float = 1.0,
                      **options):
        """An untrained head for G at `layer` (default `default_compensated_layer`), reading min(R, 256) px;
        `options`: the subclass's other constructor arguments (SDIC's fusion)."""
        layer = layer or default_compensated_layer(G)
        c, h, _ = G.synthesis.feature_shape(layer)
        return cls(G.num_ws, G.w_dim, layer, c, h, input_size or min(G.resolution, 256), width, **options)

    def bind(self, base: nn.Module) -> "SingleLayerHead":
        """These heads read only ws and images: nothing to keep from the base encoder; returns self
        (`CompensationHead.bind`)."""
        return self

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, R, R] -> [N, 3, r, r] (bilinear, antialiased when shrinking; unchanged when R = r)."""
        if x.shape[-1] == self.input_size:
            return x
        return F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                             antialias=x.shape[-1] > self.input_size)

    def shrink_render(self, rendered: torch.Tensor, antialias: bool = False) -> torch.Tensor:
        """Renders G(W) [N, 3, R, R] -> clamp(., -1, 1) at [N, 3, r, r]: plain bilinear interpolation
        (align_corners=False, no antialiasing), as the released HFGI and SDIC shrink their renders (fine detail of
        a 1024 px render aliases into the 256 px map, and the trained weights expect it); `antialias` filters
        first, as `resize` does for the target."""
        rendered = rendered.clamp(-1, 1)
        if antialias or rendered.shape[-1] == self.input_size:
            return self.resize(rendered)
        return F.interpolate(rendered, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)

    def check_codes(self, G, ws: torch.Tensor) -> None:
        """ValueError unless G and ws [N, num_ws, w_dim] have this head's code shape."""
        name = type(self).__name__
        if G.num_ws != self.num_ws or G.w_dim != self.w_dim:
            raise ValueError(f"this {name} head is for {self.num_ws} x {self.w_dim} ws, the generator has "
                             f"{G.num_ws} x {G.w_dim}")
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
