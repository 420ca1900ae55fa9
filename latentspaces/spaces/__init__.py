"""Latent spaces as parameterizations with projections: Z, Z+, W, W+, S, P_N, F/W+, F/W+(P_N), F/Z, F/Z+.

    space = FZPlus(G)
    code = space.random(4, seed=0)        # Code(f=[4, C, h, w], z=[4, L, z_dim])
    x = space.synthesize(code)
    space.project_(code)                  # after an optimizer step: retract z's to the sphere
    edited = space.edit(code, direction, alpha=2.0)
"""

from .base import LatentSpace, retract_to_sphere_
from .code import Code, CodeFile, read_code_file
from .f import FWPlus, FWPlusPN, FZ, FZPlus, default_f_layer, f_size_note
from .pn import PN, PNStats
from .registry import SPACE_LABELS, SPACE_ORDER, SPACES, build_space, is_f_space
from .s import S
from .w import W, WPlus
from .z import Z, ZPlus

__all__ = ["Code", "CodeFile", "read_code_file", "SPACE_LABELS", "SPACE_ORDER", "build_space", "is_f_space", "LatentSpace", "retract_to_sphere_", "default_f_layer", "f_size_note", "PNStats", "SPACES",
           "Z", "ZPlus", "W", "WPlus", "S", "PN", "FWPlus", "FWPlusPN", "FZ", "FZPlus"]
