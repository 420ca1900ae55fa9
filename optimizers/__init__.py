"""Optimizers: HybridInverter (encoder-initialized projected optimization into any latent space) and
PTI-style generator tuning (W pivot, then the generator tuned to it)."""

from .hybrid import HybridInverter, InversionDiverged, InversionResult
from .pti import PTI, PTIResult

__all__ = ["HybridInverter", "InversionDiverged", "InversionResult", "PTI", "PTIResult"]
