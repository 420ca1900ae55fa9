"""latentspaces: StyleGAN inversion and editing across the latent spaces of the literature.

    import latentspaces as ls
    G = ls.load_generator("stylegan2-ffhq-config-f.pt")   # rosinality, NVlabs .pkl, or "default"
    x = G(z, truncation_psi=0.7)                            # [N, 3, R, R] in [-1, 1]
"""

from .checkpoints import load_generator, save_generator
from .directions import Direction
from .errors import CheckpointError, MissingWeightsError
from .generator import Generator
from .interfaces import Compensation
from .spaces import (FZ, PN, SPACE_ORDER, SPACES, Code, FWPlus, FWPlusPN, FZPlus, LatentSpace, PNStats, S, W, WPlus,
                     Z, ZPlus, build_space)

__version__ = "0.1.0"


__all__ = ["CheckpointError", "Code", "Compensation", "Direction", "Generator", "LatentSpace", "MissingWeightsError",
           "PNStats", "SPACES", "SPACE_ORDER", "Z", "ZPlus", "W", "WPlus", "S", "PN", "FWPlus", "FWPlusPN", "FZ",
           "FZPlus", "build_space", "load_generator", "save_generator", "__version__"]
