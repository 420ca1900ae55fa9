"""The interfaces other layers plug into, declared as typing Protocols (structural: no base class needed).

- `PerceptualDistance`: d(x, y) -> [N] on images [N, 3, H, W] in [-1, 1], differentiable in x.
- `IdentitySimilarity`: sim(x, y) -> [N] in [-1, 1] (cosine of face descriptors); has a `name`.
  `FaceEmbedder`: one that also returns its descriptors, `embed(images) -> [N, D]`.
- `CodeInitializer`: an encoder that starts an inversion, `init_code(space, targets) -> Code`.
- `CompensationHead`: a network that puts back what an inversion lost, beside the optimizer:
  `compensate(G, x, ws, x0=None) -> Compensation` and `edit(G, comp, delta_ws) -> images`, after
  `bind(base)` to the frozen base encoder that made ws (heads that read its features keep it).
  Heads that inject into the generator use the synthesis network's layer hooks
  (`SynthesisNetwork.with_edits`); heads that re-render return their image directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Optional, Protocol, Tuple, runtime_checkable

import torch

if TYPE_CHECKING:  # annotations only: no import at run time
    from .generator import Generator
    from .spaces import Code, LatentSpace


@runtime_checkable
class PerceptualDistance(Protocol):
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y [N, 3, H, W] in [-1, 1] -> distance [N] (>= 0, 0 for equal images), differentiable in x."""


@runtime_checkable
class IdentitySimilarity(Protocol):
    name: str

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y [N, 3, H, W] in [-1, 1] -> similarity [N] in [-1, 1] (1: the same face)."""


@runtime_checkable
class FaceEmbedder(IdentitySimilarity, Protocol):
    """An identity similarity that is the cosine of face descriptors it can return (dlib, facenet);
    what `latentspaces.metrics.identity_calibration` needs to score every pair of a target set."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> descriptors [N, D]."""


@runtime_checkable
class CodeInitializer(Protocol):
    def init_code(self, space: "LatentSpace", targets: torch.Tensor) -> "Code":
        """Codes of `space` [N ...] that start the inversion of targets [N, 3, R, R] in [-1, 1]."""


@dataclass
class Compensation:
    """What a compensation head made of one batch.

    image:  the compensated reconstruction [N, 3, R, R] in ~[-1, 1].
    ws:     the codes it is rendered from [N, num_ws, w_dim] (the head may have corrected the base codes);
            edits move these.
    cache:  whatever `edit` needs again, by name (layer residuals, residual codes, maps), [N, ...] each.
    """

    image: torch.Tensor
    ws: torch.Tensor
    cache: Dict[str, torch.Tensor] = field(default_factory=dict)

@runtime_checkable
class CompensationHead(Protocol):
    layers: Tuple[str, ...]     # generator conv layers the head injects into, in layer order (() for re-rendering heads)

    @property
    def config(self) -> dict:
        """JSON-serialisable constructor arguments (saved in the file header)."""

    def bind(self, base: torch.nn.Module) -> "CompensationHead":
        """Attach the frozen base encoder (x [N, 3, R, R] -> ws) whose codes `compensate` receives; returns the
        head. Heads that read the encoder's features (GradStyle's pyramid) keep a reference, not saved with
        the head; heads that need only ws and images return themselves unchanged."""

    def compensate(self, G: "Generator", x: torch.Tensor, ws: torch.Tensor,
                   x0: Optional[torch.Tensor] = None) -> Compensation:
        """Targets x [N, 3, R, R], the base encoder's ws [N, num_ws, w_dim] and optionally x0 = G(ws)."""

    def edit(self, G: "Generator", comp: Compensation, delta_ws: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, R, R] of comp.ws + delta_ws with the compensation carried over; delta 0 gives comp.image
        (except SDIC's released edit rule, which adds the feature residual of the base codes: see encoders.sdic)."""


__all__ = ["CodeInitializer", "Compensation", "CompensationHead", "FaceEmbedder", "IdentitySimilarity",
           "PerceptualDistance"]
