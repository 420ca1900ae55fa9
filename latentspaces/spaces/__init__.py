"""Latent spaces as parameterizations with projections: Z, Z+, W, W+, S, P_N, F/W+, F/Z, F/Z+.

    space = FZPlus(G)
    code = space.random(4, seed=0)        # Code(f=[4, C, h, w], z=[4, L, z_dim])
    x = space.synthesize(code)
    space.project_(code)                  # after an optimizer step: retract z's to the sphere
    edited = space.edit(code, direction, alpha=2.0)
"""

from .base import LatentSpace, retract_to_sphere_
from .code import Code
from .f import FWPlus, FZ, FZPlus, default_f_layer
from .pn import PN, PNStats
from .s import S
from .w import W, WPlus
from .z import Z, ZPlus

SPACES = {cls.__name__: cls for cls in (Z, ZPlus, W, WPlus, S, PN, FWPlus, FZ, FZPlus)}

__all__ = ["Code", "LatentSpace", "retract_to_sphere_", "default_f_layer", "PNStats", "SPACES",
           "Z", "ZPlus", "W", "WPlus", "S", "PN", "FWPlus", "FZ", "FZPlus"]
