"""Editing directions: the `Direction` type, finders (GANSpace, InterfaceGAN, SeFa, random), file I/O."""

from .direction import Direction
from .finders import GANSPACE_SAMPLES, ganspace, interfacegan, orthogonalize, random_directions, sefa
from .io import load_directions, save_directions

__all__ = ["Direction", "GANSPACE_SAMPLES", "ganspace", "interfacegan", "orthogonalize", "random_directions", "sefa",
           "load_directions", "save_directions"]
