"""Perceptual distances for the inversion loss and the metrics: a small interface and LPIPS.

A perceptual distance is any callable `d(x, y) -> [N]` on images [N, 3, H, W] in [-1, 1],
differentiable in x. `LPIPS` wraps the `lpips` package (its linear heads ship in the wheel);
its VGG / AlexNet backbones are torchvision ImageNet weights that must already be in the
local torch hub cache: nothing is downloaded. When they are missing, constructing LPIPS
raises `MissingWeightsError` naming the file, where it was looked for, and the alternative.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import MissingWeightsError
from ..interfaces import PerceptualDistance

# torchvision's file names for the ImageNet backbones lpips uses.
BACKBONE_FILES = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resize_for_lpips(x: torch.Tensor, size: int = 256) -> torch.Tensor:
    """Images larger than `size` are resized to it (bicubic, antialiased), as BDInvert does; smaller pass."""
    if x.shape[-1] <= size:
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


class LPIPS(torch.nn.Module):
    """LPIPS distance [N] (lpips package), computed at 256 px for larger images."""

    def __init__(self, net: str = "vgg", resize_to: int = 256):
        super().__init__()
        if net not in BACKBONE_FILES:
            raise ValueError(f"LPIPS net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
        path = torch_hub_checkpoints() / BACKBONE_FILES[net]
        if not path.is_file():
            raise MissingWeightsError(
                f"LPIPS-{net} needs torchvision's ImageNet backbone {BACKBONE_FILES[net]}, looked for at {path} "
                f"(torch hub cache; set TORCH_HOME to use another). Nothing is downloaded at run time: copy the "
                "file there, or pass another perceptual distance (any callable (x, y) -> [N]), or perceptual=None "
                "for an MSE-only loss."
            )
        import lpips  # imported late: it prints a banner and pulls torchvision

        self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=False, verbose=False).eval().requires_grad_(False)
        self.resize_to = resize_to
        self.name = f"lpips-{net}"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(resize_for_lpips(x, self.resize_to), resize_for_lpips(y, self.resize_to)).flatten()


def lpips_available(net: str = "vgg") -> bool:
    return (torch_hub_checkpoints() / BACKBONE_FILES[net]).is_file() and os.environ.get("LATENTSPACES_NO_LPIPS") is None


def make_perceptual(name: Optional[str]) -> Optional[PerceptualDistance]:
    """'lpips-vgg' | 'lpips-alex' | None."""
    if name is None or name == "none":
        return None
    if name.startswith("lpips-"):
        return LPIPS(name.split("-", 1)[1])
    raise ValueError(f"unknown perceptual distance {name!r}; use 'lpips-vgg', 'lpips-alex' or None")
