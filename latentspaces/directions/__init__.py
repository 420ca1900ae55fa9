"""Editing directions: the `Direction` type (finders for GANSpace, InterfaceGAN, SeFa, random follow)."""

from .direction import Direction

__all__ = ["Direction"]
