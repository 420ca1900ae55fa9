"""Optimizers: HybridInverter (encoder-initialized projected optimization into any latent space)."""

from .hybrid import HybridInverter, InversionDiverged, InversionResult

__all__ = ["HybridInverter", "InversionDiverged", "InversionResult"]
