"""The default domain: 64x64 faces sampled from the DCGAN shipped in the `gan-face-generate` wheel.

That wheel carries a DCGAN generator trained on DigiFace-1M (`weights.tar`, a torch.save dict
with 'netG_state_dict'). We read only that file, weights-only, into our own definition of the
standard DCGAN generator; none of the wheel's code is imported (it pulls wandb and more).
Install it with `pip install --no-deps gan-face-generate`.

Seeds: training batches come from one torch.Generator stream seeded with the training seed;
held-out image i is drawn alone from torch.Generator().manual_seed(HELDOUT_BASE + i). The
training stream draws a fresh Gaussian z [100] per image from a different seed, so a
held-out z would have to be reproduced bit for bit by another stream: they never coincide.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import nn

from ..errors import MissingWeightsError

HELDOUT_BASE = 10**9   # held-out image i uses seed HELDOUT_BASE + i
Z_DIM = 100


def dcgan_weights_path() -> Path:
    """weights.tar inside the installed gan_face_generate package (found without importing it)."""
    spec = importlib.util.find_spec("gan_face_generate")
    where = "this Python's site-packages"
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0])
        path = folder / "weights.tar"
        if path.is_file():
            return path
        where = str(path)
    raise MissingWeightsError(
        f"the default face domain needs weights.tar from the 'gan-face-generate' wheel (looked in {where}). "
        "Install it with `pip install --no-deps gan-face-generate`, or train on --data generator or a photo folder."
    )


class DCGANGenerator(nn.Sequential):
    """Standard DCGAN generator: z [N, 100, 1, 1] -> image [N, 3, 64, 64] in [-1, 1] (Tanh)."""

    def __init__(self, z_dim: int = Z_DIM, width: int = 64):
        layers, cin = [], z_dim
        for i, cout in enumerate((width * 8, width * 4, width * 2, width)):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(True)]
            cin = cout
        layers += [nn.ConvTranspose2d(cin, 3, 4, 2, 1, bias=False), nn.Tanh()]
        super().__init__()
        self.main = nn.Sequential(*layers)  # state-dict keys main.0.weight ... main.12.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


class FaceSampler:
    """Deterministic 64x64 face images from the DCGAN, on a device."""

    def __init__(self, device: str | torch.device = "cpu", weights: Optional[Path] = None):
        self.device = torch.device(device)
        state = torch.load(weights or dcgan_weights_path(), map_location="cpu", weights_only=True)["netG_state_dict"]
        self.net = DCGANGenerator()
        self.net.load_state_dict(state)
        self.net.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def from_z(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, 100] -> [N, 3, 64, 64] float32 in [-1, 1]."""
        return self.net(z.to(self.device)).clamp(-1, 1)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """n images from one seeded stream."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        return self.from_z(torch.randn(n, Z_DIM, generator=gen))

    def heldout(self, n: int = 64, start: int = 0) -> torch.Tensor:
        """Held-out images start..start+n-1, each from its own seed HELDOUT_BASE + i."""
        z = torch.stack([torch.randn(Z_DIM, generator=torch.Generator().manual_seed(HELDOUT_BASE + i))
                         for i in range(start, start + n)])
        return self.from_z(z)

    def stream(self, batch: int, seed: int, generator: Optional[torch.Generator] = None) -> Iterator[torch.Tensor]:
        """Endless training batches; pass `generator` to checkpoint / restore the stream's state."""
        gen = generator or torch.Generator(device=self.device).manual_seed(seed)
        while True:
            yield self.from_z(torch.randn(batch, Z_DIM, generator=gen, device=self.device))
