"""F encoder (BDInvert's base-code encoder): image -> base feature f at the generator's F layer.

Architecture (BDInvert's `encoder_simple`): the input is resized to 8x the F resolution; three blocks of
[3 x (conv3x3 + BatchNorm + LeakyReLU 0.2)] + 2x average pooling with 128 -> 256 -> 512
channels bring it to the F resolution; a head maps to the F channels. Trained only on generated pairs
("Revisiting Latent Space of GAN Inversion", Eq. 2; trained by experiments/training/train_f_encoder.py).

`layout='released'` (the default) is BDInvert's network: convs with biases, head conv3x3 (-> C_f) + BatchNorm
+ LeakyReLU + conv3x3 (C_f -> C_f); 72 tensors and 12,399,872 parameters for b16.conv0 at 1024 px, so its
released `.pth` loads whole (`encoders.released.load_bdinvert_encoder`). `layout='compact'` is the form of the
files this project trained before (`default-f`): convs without biases, head conv3x3 (kept width) + LeakyReLU
+ conv3x3 (-> C_f), 58 tensors.

The input is brought to 8h px by `resize`: 'antialias' (the default, differentiable: bilinear with
antialiasing when shrinking, as this project's encoders were trained) or 'lanczos' (BDInvert's own
preprocessing: PIL's Lanczos filter on the uint8 image, then back to [-1, 1]; not differentiable, for
inference), which `load_bdinvert_encoder` sets for the released file.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentspaces.spaces import Code, LatentSpace

from .config_checks import MAX_SIDE, check_count, check_side, conv_layer_resolution
from .probing import probe_images


LAYOUTS = ("released", "compact")
RESIZES = ("antialias", "lanczos")


def lanczos_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] resized to size x size as BDInvert prepares its encoder's input: each image
    rounded to uint8, resized by PIL's Lanczos filter, and mapped back to [-1, 1] (x / 127.5 - 1)."""
    from PIL import Image
    out = []
    for image in x.detach():
        pixels = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        resized = Image.fromarray(pixels).resize((size, size), Image.LANCZOS)
        out.append(torch.from_numpy(np.array(resized)).permute(2, 0, 1))
    return torch.stack(out).to(x.device, x.dtype) / 127.5 - 1


def _block(cin: int, cout: int, convs: int = 3, bias: bool = True) -> nn.Sequential:
    layers = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout),
                   nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


class FEncoder(nn.Module):
    """x [N, 3, R, R] in [-1, 1] -> f [N, C_f, h, h] (h = F resolution; input resized to 8h)."""

    # what files written before `layout` and `resize` existed were trained with
    config_before_field = {"layout": "compact", "resize": "antialias"}

    def __init__(
        self,
        f_channels: int,                                  # channels of the F layer output
        f_resolution: int,                                # spatial size h of the F layer output
        widths: Sequence[int] = (128, 256, 512),          # channels of the three pooling blocks
        layer: str = "",                                  # generator layer name this encoder targets
        layout: str = "released",                         # 'released' (BDInvert's) or 'compact' (module docstring)
        resize: str = "antialias",                        # 'antialias' or 'lanczos' (BDInvert's; module docstring)
    ):
        super().__init__()
        check_count(f_channels, "f_channels")
        check_side(f_resolution, "f_resolution", 4, MAX_SIDE // 8)   # the input is 8 h px
        if layer and conv_layer_resolution(layer) != f_resolution:
            raise ValueError(f"layer {layer!r} puts out {conv_layer_resolution(layer)} px features, not f_resolution "
                             f"= {f_resolution}")
        if not widths or len(widths) > 8:
            raise ValueError(f"widths needs 1 to 8 entries, got {len(widths)}")
        for w in widths:
            check_count(w, "widths[i]")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
        self.f_channels, self.f_resolution, self.layer, self.layout = f_channels, f_resolution, layer, layout
        self.resize = resize
        self.widths = tuple(widths)
        blocks, cin = [], 3
        for w in self.widths:
            blocks.append(_block(cin, w, bias=layout == "released"))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        if layout == "released":
            self.head = nn.Sequential(nn.Conv2d(cin, f_channels, 3, padding=1), nn.BatchNorm2d(f_channels),
                                      nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(f_channels, f_channels, 3, padding=1))
        else:
            self.head = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                      nn.Conv2d(cin, f_channels, 3, padding=1))

    @property
    def input_size(self) -> int:
        """Side of the image the encoder reads, px: 8 x f_resolution (three halving blocks)."""
        return self.f_resolution * 2 ** len(self.widths)

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON values (what an encoder file's header stores)."""
        return dict(f_channels=self.f_channels, f_resolution=self.f_resolution, widths=list(self.widths), layer=self.layer,
                    layout=self.layout, resize=self.resize)

    @classmethod
    def for_generator(cls, G, layer: str, widths: Sequence[int] = (128, 256, 512),
                      layout: str = "released") -> "FEncoder":
        """An (untrained) encoder for the output of conv `layer` of generator G."""
        c, h, _ = G.synthesis.feature_shape(layer)
        return cls(c, h, widths, layer, layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"FEncoder expects images [N, 3, H, W], got {tuple(x.shape)}")
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            if self.resize == "lanczos":
                x = lanczos_resize(x, self.input_size)
            else:
                x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                                  antialias=x.shape[-1] > self.input_size)
        return self.head(self.blocks(x))

    def probe(self) -> Dict[str, torch.Tensor]:
        """The output check's pass (`encoders.probing`): f of a fixed image at the input size."""
        return {"f": self(probe_images(self.input_size).to(next(self.parameters()).device))}

    def init_code(self, space: LatentSpace, targets: torch.Tensor) -> Code:
        """HybridInverter initialisation: f0 = E(x) with the space's mean detail codes (F spaces only)."""
        if space.feature_layer is None:
            raise ValueError(f"an F encoder initialises F spaces (FWPlus, FZ, FZPlus), not {space.name}")
        if self.layer and space.feature_layer != self.layer:
            raise ValueError(f"this encoder predicts {self.layer}, the space's F layer is {space.feature_layer}")
        expected = space.G.synthesis.feature_shape(space.feature_layer)
        if tuple(expected) != (self.f_channels, self.f_resolution, self.f_resolution):
            raise ValueError(f"this encoder predicts f of shape {(self.f_channels, self.f_resolution, self.f_resolution)}"
                             f", the space's base code is {tuple(expected)}")
        was_training = self.training
        self.eval()
        try:
            return space.from_feature(self(targets))
        finally:
            self.train(was_training)
