"""Pure-PyTorch StyleGAN2 generator (mapping + 'skip' synthesis) with latent-space hooks."""

from .generator import Generator, default_channels
from .mapping import FullyConnectedLayer, MappingNetwork
from .synthesis import SynthesisLayer, SynthesisNetwork, ToRGBLayer

__all__ = ["Generator", "default_channels", "FullyConnectedLayer", "MappingNetwork", "SynthesisLayer",
           "SynthesisNetwork", "ToRGBLayer"]
