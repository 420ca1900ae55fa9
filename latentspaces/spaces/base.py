"""`LatentSpace`: the interface every space implements (Z, Z+, W, W+, S, P_N, F/W+, F/Z, F/Z+).

A space is a parameterization of the generator's input: a `Code` of named tensors, a map
code -> image (`synthesize`), the manifold each field lives on (`manifold(field)`: projection after
every optimizer step with `project_`, retraction in `edit`), edits along directions, the space's own
penalty terms, and the capabilities callers rely on, declared here rather than probed:
`base_fields` (fields regularised towards their initial value), `feature_layer` (F spaces: the
generator layer of the base code, else None) and `ws_layout` (how codes are built from ws).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..directions import Direction
from ..generator import Generator
from .code import Code
from .manifolds import Euclidean, Manifold, Sphere, retract_to_sphere_

DirectionLike = Union[Direction, torch.Tensor]
WS_LAYOUTS = ("none", "shared", "per_layer")


def random_sphere(shape: Sequence[int], radius: float, generator: torch.Generator, device) -> torch.Tensor:
    """Uniform samples on the sphere of `radius` (normalised Gaussians), shape [..., d]."""
    z = torch.randn(*shape, generator=generator, device=generator.device).to(device)
    return retract_to_sphere_(z, radius)


class LatentSpace:
    """Base class. Subclasses set the class attributes below and implement `to_ws` or `synthesize`.

    kind:             code type of the edited field ('z', 'w' or 's'), matched against Direction.kind.
    edit_field:       name of the Code field edits move (the detail codes in F spaces).
    per_layer:        edit_field is [N, L, D] with one row per entry of code_layers.
    spherical_fields: fields that live on the sqrt(z_dim) sphere (`Sphere` manifolds); others are Euclidean
                      unless a subclass sets another manifold in `self.manifolds`.
    base_fields:      fields the inverter regularises towards their initial value (F spaces' base code f).
    feature_layer:    F spaces: the conv layer whose output is the base code (codes come `from_feature`); None.
    ws_layout:        'per_layer' (from_ws takes ws [N, num_ws, w_dim]), 'shared' (one w for every layer:
                      from_ws takes w [N, w_dim]) or 'none' (codes cannot be built from ws).
    uses_pn_stats:    the constructor takes fitted P_N statistics as `stats=` (P_N, F/W+(P_N)); `build_space`
                      passes them and commands fit them only for such spaces.
    """

    kind: str = "w"
    edit_field: str = "w"
    per_layer: bool = False
    spherical_fields: Tuple[str, ...] = ()
    base_fields: Tuple[str, ...] = ()
    feature_layer: Optional[str] = None
    ws_layout: str = "none"
    uses_pn_stats: bool = False

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
        self.manifolds: Dict[str, Manifold] = {f: Sphere(self.radius) for f in self.spherical_fields}

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        """The space's name, its class name ('FZPlus'): the key of rows, files and flags."""
        return type(self).__name__

    @property
    def device(self) -> torch.device:
        """The device of the space's generator (codes are made there)."""
        return self.G.w_avg.device

    def options(self) -> Dict[str, object]:
        """The constructor options that change what a code renders to, as JSON values: the truncation when there
        is one ({} otherwise). Code files record them, so that a reader rebuilds the same space
        (`build_space(name, G, **options)`)."""
        if self.truncation_psi == 1:
            return {}
        return {"truncation_psi": self.truncation_psi, "truncation_cutoff": self.truncation_cutoff}

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.options().items())
        return f"{self.name}(resolution={self.G.resolution}{extra})"

    # ------------------------------------------------------------------ codes
    def random(self, n: int, seed: int = 0) -> Code:
        """n codes drawn from the space's prior with `seed` (same seed, same device -> same codes)."""
        raise NotImplementedError

    def mean(self, n: int) -> Code:
        """n copies of the space's central code (w_avg, or its counterpart)."""
        raise NotImplementedError

    def from_ws(self, ws: torch.Tensor) -> Code:
        """Codes that reproduce the images of ws [N, num_ws, w_dim] (or w [N, w_dim]); see `ws_layout`."""
        raise NotImplementedError(f"{self.name} codes cannot be built from ws")

    def from_feature(self, f: torch.Tensor, detail: Optional[Code] = None) -> Code:
        """F spaces: a code from a base feature f [N, C, h, w] at `feature_layer` and detail codes."""
        raise NotImplementedError(f"{self.name} codes have no base feature (feature_layer is None)")

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
    def manifold(self, field: str) -> Manifold:
        """The manifold code field `field` lives on (Euclidean unless declared otherwise)."""
        return self.manifolds.get(field, Euclidean())

    def project_(self, code: Code) -> Code:
        """In place, after an optimizer step: project every constrained field (Z-type codes to the sphere)."""
        for name, manifold in self.manifolds.items():
            manifold.projx_(code[name])
        return code

    def penalty(self, code: Code) -> Dict[str, torch.Tensor]:
        """The space's own weighted regularizer terms {name: [N]} (none by default)."""
        return {}

    # ------------------------------------------------------------------ drags
    def drag_masks(self, code: Code, moved_ws: Sequence[int], move_base: bool = True) -> Dict[str, torch.Tensor]:
        """What a point drag moves ("Drag Your GAN", Sec. 3.2: the ws of the coarse layers; the released code moves
        ws 0-5 of W+): {field: 0/1 float mask, broadcastable to code[field]}, 1 where the drag may change it.

        The edited field: a per-layer space moves the rows whose ws index (`code_layers`) is in `moved_ws`
        (Z+ rows stay on the sphere through `project_`); a space with one code for all layers (Z, W, P_N,
        F/Z) moves that code, which drives every layer. F spaces' base code f moves with `move_base`.
        ValueError when nothing would move.
        """
        moved = set(moved_ws)
        masks: Dict[str, torch.Tensor] = {}
        for name in code.fields:
            t = code[name]
            if name == self.edit_field and self.per_layer:
                rows = torch.tensor([float(i in moved) for i in self.code_layers], device=t.device)
                masks[name] = rows.view(1, -1, *([1] * (t.ndim - 2)))
            elif name in self.base_fields:
                masks[name] = t.new_full((1,) * t.ndim, float(move_base))
            else:
                masks[name] = t.new_ones((1,) * t.ndim)
        if not any(m.any() for m in masks.values()):
            raise ValueError(f"a drag in {self.name} with moved ws {sorted(moved)} and move_base={move_base} moves "
                             f"nothing: its rows drive ws {self.code_layers}")
        return masks

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

    def edit(self, code: Code, direction: DirectionLike, alpha: float, layers: Optional[Sequence[int]] = None,
             substeps: int = 1) -> Code:
        """A new code moved by alpha * direction on the edited field (rows `layers` only, as ws indices).

        The move is a retraction on the field's manifold, in `substeps` equal steps (on a sphere, many small
        steps follow the surface; the official F/Z+ code uses 1000). Rows the edit does not touch stay
        bit-identical.
        """
        if substeps < 1:
            raise ValueError(f"substeps must be >= 1, got {substeps}")
        manifold = self.manifold(self.edit_field)
        new = code[self.edit_field].detach().clone()
        vec, positions = self._direction_rows(direction, layers, new.shape[-1])
        for _ in range(substeps):
            if self.per_layer:
                rows = list(range(new.shape[1])) if positions is None else positions
                step = (alpha / substeps) * (vec if vec.ndim == 2 else vec.expand(len(rows), -1))
                # a zero row of a per-layer direction changes nothing (no re-projection of that row)
                new[:, rows] = torch.where((step == 0).all(-1, keepdim=True), new[:, rows],
                                           manifold.retr(new[:, rows], step))
            else:
                new = manifold.retr(new, (alpha / substeps) * vec)
        out = code.detach().clone()
        out[self.edit_field] = new
        return out
