"""`LatentSpace`: the interface every space implements (Z, Z+, W, W+, S, P_N, F/W+, F/Z, F/Z+).

A space is a parameterization of the generator's input: a `Code` of named tensors, a map
code -> image (`synthesize`), the projection applied after every optimizer step
(`project_`), edits along directions (`edit`), and the space's own penalty terms.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..directions import Direction
from ..generator import Generator
from .code import Code

DirectionLike = Union[Direction, torch.Tensor]


def retract_to_sphere_(z: torch.Tensor, radius: float) -> torch.Tensor:
    """In place: z_i <- radius * z_i / ||z_i|| over the last dim (Eq. 5); each z_i separately."""
    with torch.no_grad():
        z.mul_(radius / z.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return z


def random_sphere(shape: Sequence[int], radius: float, generator: torch.Generator, device) -> torch.Tensor:
    """Uniform samples on the sphere of `radius` (normalised Gaussians), shape [..., d]."""
    z = torch.randn(*shape, generator=generator, device=generator.device).to(device)
    return retract_to_sphere_(z, radius)


class LatentSpace:
    """Base class. Subclasses set the class attributes below and implement `to_ws` or `synthesize`.

    kind:        code type of the edited field ('z', 'w' or 's'), matched against Direction.kind.
    edit_field:  name of the Code field edits move (the detail codes in F spaces).
    """

    kind: str = "w"
    edit_field: str = "w"
    per_layer: bool = False          # edit_field is [N, L, D] with one row per entry of code_layers
    spherical_fields: tuple = ()     # fields retracted to the sqrt(z_dim) sphere by project_

    def __init__(
        self,
        G: Generator,                          # the generator (kept frozen; never modified)
        truncation_psi: float = 1.0,           # optional truncation inside synthesis (off by default)
        truncation_cutoff: Optional[int] = None,  # truncate only the first `cutoff` ws (None: all)
        noise_mode: str = "const",             # synthesis noise: 'const' keeps inversion deterministic
    ):
        self.G = G
        self.truncation_psi, self.truncation_cutoff, self.noise_mode = truncation_psi, truncation_cutoff, noise_mode
        self.radius = math.sqrt(G.z_dim)
        self.code_layers: List[int] = list(range(G.num_ws))  # ws indices driven by the edited field

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def device(self) -> torch.device:
        return self.G.w_avg.device

    def __repr__(self) -> str:
        extra = "" if self.truncation_psi == 1 else f", truncation_psi={self.truncation_psi}"
        return f"{self.name}(resolution={self.G.resolution}{extra})"

    # ------------------------------------------------------------------ codes
    def random(self, n: int, seed: int = 0) -> Code:
        """n codes drawn from the space's prior with `seed` (same seed, same device -> same codes)."""
        raise NotImplementedError

    def mean(self, n: int) -> Code:
        """n copies of the space's central code (w_avg, or its counterpart)."""
        raise NotImplementedError

    def from_ws(self, ws: torch.Tensor) -> Code:
        """Codes that reproduce the images of ws [N, num_ws, w_dim], where the space can."""
        raise NotImplementedError(f"{self.name} codes cannot be built from ws")

    def parameters(self, code: Code) -> List[torch.Tensor]:
        """The tensors an optimizer updates (all fields, in field order)."""
        return code.tensors()

    # ------------------------------------------------------------------ generation
    def to_ws(self, code: Code) -> torch.Tensor:
        """ws [N, num_ws, w_dim] of a code (for spaces that have them; F spaces fill only the detail rows)."""
        raise NotImplementedError(f"{self.name} codes have no ws")

    def _truncate(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.truncate(ws, self.truncation_psi, self.truncation_cutoff)

    def synthesize(self, code: Code, **synthesis_kwargs) -> torch.Tensor:
        """Images [N, 3, R, R] in ~[-1, 1] (differentiable w.r.t. the code)."""
        kw = {"noise_mode": self.noise_mode, **synthesis_kwargs}
        return self.G.synthesis(self._truncate(self.to_ws(code)), **kw)

    # ------------------------------------------------------------------ projection and penalties
    def project_(self, code: Code) -> Code:
        """In place, after an optimizer step: retract every Z-type field to the sqrt(z_dim) sphere."""
        for name in self.spherical_fields:
            retract_to_sphere_(code[name], self.radius)
        return code

    def penalty(self, code: Code) -> Dict[str, torch.Tensor]:
        """The space's own weighted regularizer terms {name: [N]} (none by default)."""
        return {}

    # ------------------------------------------------------------------ edits
    def _direction_rows(self, direction: DirectionLike, layers: Optional[Sequence[int]], dim: int) -> tuple:
        """Check a direction against this space; return (rows [L_sel, dim] or [dim], code positions or None)."""
        if isinstance(direction, Direction):
            if direction.kind != self.kind:
                raise ValueError(
                    f"a {direction.kind!r}-space direction cannot edit {self.name} codes, whose edits live in "
                    f"{self.kind!r} space (e.g. use a Z direction for Z, Z+, F/Z, F/Z+ and a W direction for W, W+, F/W+)"
                )
            vec = direction.vector
            layers = direction.layers if layers is None else layers
        else:
            vec = direction
        if not isinstance(vec, torch.Tensor) or vec.ndim not in (1, 2) or vec.shape[-1] != dim:
            raise ValueError(f"{self.name} edits take a direction [{dim}] or [L, {dim}], got "
                             f"{tuple(getattr(vec, 'shape', ()))}")
        vec = vec.to(self.device, torch.float32)
        if layers is None:
            positions = None if vec.ndim == 1 else list(range(len(self.code_layers)))
        else:
            bad = [i for i in layers if i not in self.code_layers]
            if bad:
                raise ValueError(f"{self.name} edits may touch ws indices {self.code_layers}; {bad} are not editable here")
            positions = [self.code_layers.index(i) for i in layers]
        if not self.per_layer and positions is not None and positions != list(range(len(self.code_layers))):
            raise ValueError(f"{self.name} has one code for all layers; layer-range edits need a per-layer space")
        if vec.ndim == 2:
            count = len(self.code_layers) if positions is None else len(positions)
            if vec.shape[0] != count:
                raise ValueError(f"per-layer direction has {vec.shape[0]} rows, the edit touches {count} layers")
            if not self.per_layer:
                raise ValueError(f"{self.name} has one code for all layers; pass a single [{dim}] direction")
        return vec, positions

    def edit(self, code: Code, direction: DirectionLike, alpha: float, layers: Optional[Sequence[int]] = None) -> Code:
        """A new code moved by alpha * direction on the edited field (rows `layers` only, as ws indices)."""
        field = code[self.edit_field].detach()
        vec, positions = self._direction_rows(direction, layers, field.shape[-1])
        spherical = self.edit_field in self.spherical_fields
        new = field.clone()
        if self.per_layer:
            rows = list(range(field.shape[1])) if positions is None else positions
            step = alpha * (vec if vec.ndim == 2 else vec.expand(len(rows), -1))
            moved = field[:, rows] + step
            if spherical:  # retract moved rows only: a zero row of a per-layer direction changes nothing
                moved = torch.where((step == 0).all(-1, keepdim=True), field[:, rows], retract_to_sphere_(moved, self.radius))
            new[:, rows] = moved
        else:
            new = field + alpha * vec
            if spherical:
                retract_to_sphere_(new, self.radius)
        out = code.detach().clone()
        out[self.edit_field] = new  # rows the edit does not touch stay bit-identical
        return out
