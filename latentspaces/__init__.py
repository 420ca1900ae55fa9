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


def load_encoder(name_or_path, device="cpu"):
    """An encoder or compensation head by shipped name ('default-f', 'default-wplus', 'default-sdic') or
    file path (see encoders.load_encoder)."""
    from encoders import load_encoder as _load_encoder

    return _load_encoder(name_or_path, device)


__all__ = ["CheckpointError", "Code", "Direction", "Generator", "LatentSpace", "PNStats", "SPACES",
           "Z", "ZPlus", "W", "WPlus", "S", "PN", "FWPlus", "FZ", "FZPlus",
           "load_encoder", "load_generator", "save_generator", "__version__"]
