"""Spaces by name: the order tables use, and one factory for every command and experiment."""

from __future__ import annotations

from typing import Dict, List, Optional, Type

from .base import LatentSpace
from .f import FWPlus, FZ, FZPlus
from .pn import PN, PNStats
from .s import S
from .w import W, WPlus
from .z import Z, ZPlus

# The order of the latent-space comparison's tables: standalone spaces from the most constrained, then F spaces.
SPACE_ORDER: List[str] = ["Z", "ZPlus", "W", "WPlus", "S", "PN", "FWPlus", "FZ", "FZPlus"]
SPACES: Dict[str, Type[LatentSpace]] = {cls.__name__: cls for cls in (Z, ZPlus, W, WPlus, S, PN, FWPlus, FZ, FZPlus)}


def build_space(name: str, G, pn_stats: Optional[PNStats] = None, **kwargs) -> LatentSpace:
    """The space `name` (a key of SPACES) over generator G; P_N takes its fitted statistics `pn_stats`
    (fitted and cached on first use when None). Extra keyword arguments go to the space's constructor."""
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; choose from {SPACE_ORDER}")
    if name == "PN":
        return PN(G, stats=pn_stats, **kwargs)
    return SPACES[name](G, **kwargs)


__all__ = ["SPACE_ORDER", "SPACES", "build_space"]
