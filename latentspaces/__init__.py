"""latentspaces: StyleGAN inversion and editing across the latent spaces of the literature.

    import latentspaces as ls
    G = ls.load_generator("stylegan2-ffhq-config-f.pt")   # rosinality, NVlabs .pkl, or "default"
    x = G(z, truncation_psi=0.7)                            # [N, 3, R, R] in [-1, 1]
"""

from .checkpoints import CheckpointError, load_generator, save_generator
from .directions import Direction
from .generator import Generator
from .spaces import FZ, PN, SPACES, Code, FWPlus, FZPlus, LatentSpace, PNStats, S, W, WPlus, Z, ZPlus

__version__ = "0.1.0"

__all__ = ["CheckpointError", "Code", "Direction", "Generator", "LatentSpace", "PNStats", "SPACES",
           "Z", "ZPlus", "W", "WPlus", "S", "PN", "FWPlus", "FZ", "FZPlus",
           "load_generator", "save_generator", "__version__"]
