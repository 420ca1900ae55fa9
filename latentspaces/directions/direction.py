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
        v = self.vector
        if not isinstance(v, torch.Tensor) or v.ndim not in (1, 2) or 0 in v.shape:
            raise ValueError(f"direction vector must be a [D] or [L, D] tensor with D, L >= 1, got "
                             f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
        if not v.dtype.is_floating_point:
            raise ValueError(f"direction vector must be floating point, got {v.dtype}")
        if not torch.isfinite(v).all():
            raise ValueError(f"direction vector holds NaN or inf ({int((~torch.isfinite(v)).sum())} of {v.numel()} "
                             "entries)")
        if self.layers is not None:
            self.layers = [int(i) for i in self.layers]
            if v.ndim == 2 and len(self.layers) != v.shape[0]:
                raise ValueError(f"a per-layer direction [{v.shape[0]}, {v.shape[1]}] needs one row per entry of layers "
                                 f"({len(self.layers)} given)")
