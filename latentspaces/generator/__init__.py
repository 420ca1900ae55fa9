"""Pure-PyTorch StyleGAN2 generator (mapping + 'skip' synthesis) with latent-space hooks."""

from .config import ConfigError, check_config, state_bytes, state_shapes
from .generator import Generator, default_channels
from .mapping import FullyConnectedLayer, MappingNetwork
from .synthesis import SynthesisLayer, SynthesisNetwork, ToRGBLayer

__all__ = ["ConfigError", "check_config", "state_bytes", "state_shapes", "Generator", "default_channels", "FullyConnectedLayer", "MappingNetwork", "SynthesisLayer",
           "SynthesisNetwork", "ToRGBLayer"]
