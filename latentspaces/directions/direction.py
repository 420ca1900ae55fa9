"""`Direction`: an editing direction with the metadata that says which codes it moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

KINDS = ("z", "w", "s")


@dataclass
class Direction:
    """An editing direction.

    vector: [D] (one vector for every edited layer) or [L, D] (one per layer; L = num_ws for
            per-layer spaces, or the number of `layers`).
    kind:   the code type it lives in: 'z' (mapping input, Z / Z+ / F/Z / F/Z+), 'w' (W, W+,
            F/W+, P_N after conversion) or 's' (flattened style vectors of the S space).
    layers: ws indices the edit applies to (layer-range edits, e.g. GANSpace); None = all
            layers the space lets edits touch.
    """

    vector: torch.Tensor
    kind: str
    layers: Optional[Sequence[int]] = None
    name: str = ""
    method: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"direction kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.vector, torch.Tensor) or self.vector.ndim not in (1, 2):
            raise ValueError(f"direction vector must be a [D] or [L, D] tensor, got "
                             f"{getattr(self.vector, 'shape', type(self.vector))}")
        if self.layers is not None:
            self.layers = [int(i) for i in self.layers]
