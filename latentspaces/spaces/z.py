"""Z and Z+: mapping-network inputs on the sqrt(z_dim) hypersphere (`Sphere` manifolds: projected after every
optimizer step, retracted after every edit step; `edit(..., substeps=K)` follows the sphere in K steps)."""

from __future__ import annotations

import warnings

import torch

from ..errors import CheckpointError
from ..progress import progress_bar
from ..storage import load_tensors, save_tensors
from .base import LatentSpace, random_sphere
from .code import Code
from .manifolds import retract_to_sphere_
from .pn import cache_dir, mapping_hash

MEAN_Z_STEPS = 200  # projected-gradient steps used to find the sphere point that maps to w_avg
MEAN_Z_FORMAT = "latentspaces.mean_z"   # its cache file (storage layer)


def mean_z(space: LatentSpace, steps: int = MEAN_Z_STEPS, seed: int = 0) -> torch.Tensor:
    """The point on the sqrt(z_dim) sphere whose mapping is nearest w_avg ([z_dim]), by projected Adam.

    Z has no 'average code' (E[z] = 0 is off the sphere); this is its counterpart of w_avg. Cached per
    space object and on disk beside the P_N statistics (keyed by the mapping network's fingerprint): the
    search costs 200 passes of 64 z through the mapping (1.6 s for the default model's; a user reported 78 s
before the first bar with a 1024 px generator on a 2-core CPU).
    """
    cached = getattr(space, "_mean_z", None)
    if cached is not None:
        return cached
    G = space.G
    path = cache_dir() / "mean_z" / f"{mapping_hash(G)}_s{seed}_k{steps}_r{space.radius:.6g}.safetensors"
    if path.is_file():
        try:
            z = load_tensors(path, MEAN_Z_FORMAT)[0]["z"]
            if tuple(z.shape) == (G.z_dim,) and bool(torch.isfinite(z).all()):
                space._mean_z = z.to(space.device)
                return space._mean_z
            reason = f"a tensor of shape {tuple(z.shape)}"
        except (CheckpointError, KeyError, OSError) as e:
            reason = str(e)
        warnings.warn(f"the cached F/Z+ start point {path} is unusable ({reason[:120]}); searching it again",
                      stacklevel=2)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = random_sphere((64, G.z_dim), space.radius, gen, space.device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    with torch.enable_grad():
        for _ in progress_bar(range(steps), desc="start point: the sphere z nearest w_avg", unit="step", leave=False):
            loss = (G.mapping(z) - G.w_avg).square().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            retract_to_sphere_(z, space.radius)
    with torch.no_grad():
        best = (G.mapping(z) - G.w_avg).square().sum(1).argmin()
    space._mean_z = z[best].detach().clone()
    try:   # the cache only saves time: a read-only or full cache folder must not stop an inversion
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, {"z": space._mean_z}, MEAN_Z_FORMAT, 1, seed=seed, steps=steps)
    except OSError as e:
        warnings.warn(f"the F/Z+ start point was not cached ({path}: {e}); it will be searched again next time",
                      stacklevel=2)
    return space._mean_z


class Z(LatentSpace):
    """One z [N, z_dim] per image on the sqrt(z_dim) sphere, mapped once and broadcast to every layer."""

    kind, edit_field, spherical_fields = "z", "z", ("z",)

    def random(self, n: int, seed: int = 0) -> Code:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        return Code(z=random_sphere((n, self.G.z_dim), self.radius, gen, self.device))

    def mean(self, n: int) -> Code:
        return Code(z=mean_z(self).expand(n, -1).clone())

    def from_z(self, z: torch.Tensor) -> Code:
        """Codes whose images are G(z) for z [N, z_dim] (put on the sphere; the mapping normalises z anyway)."""
        return Code(z=retract_to_sphere_(z.detach().clone(), self.radius))

    def to_ws(self, code: Code) -> torch.Tensor:
        return self.G.broadcast(self.G.mapping(code.z))


class ZPlus(LatentSpace):
    """One z per ws layer [N, num_ws, z_dim], each on the sphere and mapped separately.

    `random` draws every layer's z independently (the space's prior); `mean` repeats mean_z.
    """

    kind, edit_field, spherical_fields, per_layer = "z", "z", ("z",), True

    def random(self, n: int, seed: int = 0) -> Code:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        return Code(z=random_sphere((n, self.G.num_ws, self.G.z_dim), self.radius, gen, self.device))

    def mean(self, n: int) -> Code:
        return Code(z=mean_z(self).expand(n, self.G.num_ws, -1).clone())

    def from_z(self, z: torch.Tensor) -> Code:
        """Codes whose images are G(z) for z [N, z_dim]: z on the sphere in every row."""
        return Code(z=retract_to_sphere_(z.detach().clone(), self.radius)[:, None].expand(-1, self.G.num_ws, -1).clone())

    def to_ws(self, code: Code) -> torch.Tensor:
        return self.G.mapping(code.z)
