"""Perceptual distances for the inversion loss and the metrics: a small interface and LPIPS.

A perceptual distance is any callable `d(x, y) -> [N]` on images [N, 3, H, W] in [-1, 1],
differentiable in x. `make_perceptual(name)` is the one lookup by name ('auto', 'd-features',
'lpips-vgg', 'lpips-alex', 'none'). `LPIPS` wraps the `lpips` package (its linear heads ship in the wheel);
its VGG / AlexNet backbones are torchvision ImageNet weights that must already be in the
local torch hub cache: nothing is downloaded. When they are missing, constructing LPIPS
raises `MissingWeightsError` naming the file, where it was looked for, and the alternative.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F

from ..discriminator import load_default_discriminator
from ..errors import MissingWeightsError, ModelChoiceError
from ..interfaces import PerceptualDistance
from .d_features import DiscriminatorFeatures

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


PERCEPTUAL_CHOICES = ("auto", "d-features", "lpips-vgg", "lpips-alex", "none")
DEFAULT_PERCEPTUAL = "auto"
D_FEATURES_RESOLUTION = 64      # the default model's discriminator reads 64 px images


def perceptual_name(name: Optional[str] = DEFAULT_PERCEPTUAL, resolution: Optional[int] = D_FEATURES_RESOLUTION) -> str:
    """The concrete distance that `name` stands for on images of `resolution` px ('none' for no distance).

    'auto' (the default) is LPIPS-VGG when its backbone is on this machine, else the default model's
    D-features distance. D-features reads 64 px images; `resolution=None` means "not the default model"
    (a caller that has not loaded the generator yet). ModelChoiceError when the name is unknown or does not fit.
    """
    name = "none" if name is None else name
    if name not in PERCEPTUAL_CHOICES:
        raise ModelChoiceError(f"unknown perceptual distance {name!r}; choose one of {', '.join(PERCEPTUAL_CHOICES)}")
    fits = resolution == D_FEATURES_RESOLUTION
    if name == "auto":
        if lpips_available("vgg"):
            return "lpips-vgg"
        if fits:
            return "d-features"
        raise ModelChoiceError(
            f"'auto' (the default) found no perceptual distance for {_images(resolution)}: LPIPS-VGG needs "
            f"{torch_hub_checkpoints() / BACKBONE_FILES['vgg']} and D-features is the default model's distance "
            "(64 px); copy the backbone there or pass perceptual 'none'")
    if name == "d-features" and not fits:
        raise ModelChoiceError(f"'d-features' is the default model's perceptual distance (64 px images), not one for "
                               f"{_images(resolution)}; use lpips-vgg, lpips-alex or none")
    return name


def _images(resolution: Optional[int]) -> str:
    return "another generator's images" if resolution is None else f"{resolution} px images"


def make_perceptual(name: Optional[str] = DEFAULT_PERCEPTUAL, resolution: Optional[int] = D_FEATURES_RESOLUTION,
                    device: Union[str, torch.device] = "cpu") -> Optional[PerceptualDistance]:
    """The perceptual distance `name` (see `perceptual_name`) on `device`, or None for 'none' (or None).

    The one resolver of a distance by name: the library, the commands and the trainers all call it.
    ModelChoiceError for a name that is unknown or does not fit; MissingWeightsError for LPIPS without
    its backbone file."""
    name = perceptual_name(name, resolution)
    if name == "none":
        return None
    if name == "d-features":
        return DiscriminatorFeatures(load_default_discriminator()).to(device)
    return LPIPS(name.split("-", 1)[1]).to(device)
