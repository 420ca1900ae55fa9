"""Image sources: the default face domain (DCGAN samples) and folder trees of image files."""

from .dcgan_faces import HELDOUT_BASE, DCGANGenerator, FaceSampler, dcgan_weights_path
from .image_folder import FolderIndex, ImageFolder, index_images

__all__ = ["HELDOUT_BASE", "DCGANGenerator", "FaceSampler", "FolderIndex", "ImageFolder", "dcgan_weights_path",
           "index_images"]
