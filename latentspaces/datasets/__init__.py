"""Image sources: the default face domain (DCGAN samples) and image-file loading."""

from .dcgan_faces import HELDOUT_BASE, DCGANGenerator, FaceSampler, dcgan_weights_path

__all__ = ["HELDOUT_BASE", "DCGANGenerator", "FaceSampler", "dcgan_weights_path"]
