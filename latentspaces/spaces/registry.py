"""Spaces by name: the order tables use, and one factory for every command and experiment."""

from __future__ import annotations

from typing import Dict, List, Optional, Type

from .base import LatentSpace
from .f import FWPlus, FWPlusPN, FZ, FZPlus, _FSpace
from .pn import PN, PNStats
from .s import S
from .w import W, WPlus
from .z import Z, ZPlus

# The order of the latent-space comparison's tables: standalone spaces from the most constrained, then F spaces.
SPACE_ORDER: List[str] = ["Z", "ZPlus", "W", "WPlus", "S", "PN", "FWPlus", "FWPlusPN", "FZ", "FZPlus"]
# How the papers write each space (for people: pages and figures; the class names above are the keys).
SPACE_LABELS: Dict[str, str] = {"Z": "Z", "ZPlus": "Z+", "W": "W", "WPlus": "W+", "S": "S", "PN": "P_N",
                                "FWPlus": "F/W+", "FWPlusPN": "F/W+(P_N)", "FZ": "F/Z", "FZPlus": "F/Z+"}
SPACES: Dict[str, Type[LatentSpace]] = {cls.__name__: cls
                                        for cls in (Z, ZPlus, W, WPlus, S, PN, FWPlus, FWPlusPN, FZ, FZPlus)}


def is_f_space(name: str) -> bool:
    """Whether space `name` has a base feature f (F/W+, F/W+(P_N), F/Z, F/Z+)."""
    return issubclass(SPACES[name], _FSpace)


def build_space(name: str, G, pn_stats: Optional[PNStats] = None, **kwargs) -> LatentSpace:
    """The space `name` (a key of SPACES) over generator G; spaces that use P_N statistics (P_N, F/W+(P_N):
    `uses_pn_stats`) take `pn_stats` (fitted and cached on first use when None). Extra keyword arguments go
    to the space's constructor."""
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; choose from {SPACE_ORDER}")
    cls = SPACES[name]
    if cls.uses_pn_stats:
        return cls(G, stats=pn_stats, **kwargs)
    return cls(G, **kwargs)


__all__ = ["SPACE_LABELS", "SPACE_ORDER", "SPACES", "build_space", "is_f_space"]
