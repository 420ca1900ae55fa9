"""The trainers' editor: random edits drawn like real ones, from W directions (GANSpace by default).

Shared by the ReGANIE trainer (its pairs x = G(w), y = G(editor(w))) and the GradStyle trainer (its
edit-consistency loss). An edit is, per sample, the sum of 1..`max_edits` distinct directions (uniform
count) at strengths uniform in [-edit_max, edit_max]. Directions: the strongest `ganspace_components`
GANSpace W directions (PCA of `ganspace_samples` mapped codes, each scaled by its axis' standard
deviation, so strengths are in standard deviations; `latentspaces.directions.ganspace`), or a file of W
directions (`--directions`, e.g. InterfaceGAN normals saved by `latentspaces.directions.save_directions`).
The distribution (1-3 of the 10 strongest GANSpace axes, strengths within 3 stds) is our choice: it
covers the compensation table's edits (GANSpace W directions at alpha +-2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

import latentspaces as ls
from experiments.argtypes import file_text, positive_float, positive_int
from experiments.config import Config, option
from latentspaces.directions import Direction, ganspace, load_directions
from latentspaces.spaces import Code, WPlus


@dataclass(frozen=True)
class EditorConfig(Config):
    """The trainer's editor: which W directions, how strong, how many at once."""

    directions: Optional[str] = option(None, "file of W directions for the editor", type=file_text,
                                       default_text="GANSpace at the start")
    ganspace_samples: int = option(20_000, "W samples of the editor's GANSpace PCA", type=positive_int)
    ganspace_components: int = option(10, "GANSpace directions the editor draws from", type=positive_int)
    edit_max: float = option(3.0, "largest edit strength (GANSpace: in stds)", type=positive_float)
    max_edits: int = option(3, "directions summed per edit: 1..this", type=positive_int)


def editor_directions(G: ls.Generator, directions: Optional[str], samples: int, components: int,
                      seed: int) -> List[Direction]:
    """The editor's W directions: the file `directions`, else GANSpace's strongest `components` (std-scaled)."""
    if directions is not None:
        return load_directions(directions, kind="w")
    with torch.no_grad():
        return ganspace(G, n_samples=samples, n_components=components, kind="w", seed=seed, scale_by_std=True)


def direction_deltas(G: ls.Generator, directions: List[Direction]) -> torch.Tensor:
    """The W+ moves [K, num_ws, w_dim] of unit strength along W directions (their layer ranges respected)."""
    bad = [d.name for d in directions if d.kind != "w"]
    if bad:
        raise SystemExit(f"the editor takes W directions; {bad} are not kind 'w'")
    space = WPlus(G)
    zero = torch.zeros(1, G.num_ws, G.w_dim, device=G.w_avg.device)
    return torch.cat([space.edit(Code(w=zero), d, 1.0).w for d in directions])


def random_edits(deltas: torch.Tensor, n: int, max_edits: int, edit_max: float, gen: torch.Generator) -> torch.Tensor:
    """Per sample the sum of 1..max_edits distinct directions of `deltas` [K, L, D] at strengths uniform in
    [-edit_max, edit_max]: [n, L, D]."""
    k = deltas.shape[0]
    count = torch.randint(1, min(max_edits, k) + 1, (n, 1), generator=gen, device=gen.device)
    rank = torch.rand(n, k, generator=gen, device=gen.device).argsort(1).argsort(1)   # a random permutation per row
    alpha = (torch.rand(n, k, generator=gen, device=gen.device) * 2 - 1) * edit_max * (rank < count)
    return torch.einsum("nk,kld->nld", alpha.to(deltas.device), deltas)


class Editor:
    """Random W+ edits for a generator: `editor(n, gen)` -> [n, num_ws, w_dim] (see the module docstring)."""

    def __init__(self, G: ls.Generator, args: EditorConfig, device: torch.device):
        dirs = editor_directions(G, args.directions, args.ganspace_samples, args.ganspace_components, args.seed)
        self.names = [d.name for d in dirs]
        self.source = str(args.directions or "ganspace")
        self.edit_max, self.max_edits = args.edit_max, args.max_edits
        with torch.no_grad():
            self.deltas = direction_deltas(G, dirs).to(device)

    def __call__(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return random_edits(self.deltas, n, self.max_edits, self.edit_max, gen)

    def meta(self) -> dict:
        """The editor's record for an export's metadata."""
        return {"directions": self.source, "names": self.names, "edit_max": self.edit_max,
                "max_edits": self.max_edits}


__all__ = ["Editor", "EditorConfig", "direction_deltas", "editor_directions", "random_edits"]
