"""Optimizers: HybridInverter (encoder-initialized projected optimization into any latent space) and
PTI-style generator tuning (W pivot, then the generator tuned to it), and the named inversion recipes."""

from .hybrid import HybridInverter, InversionDiverged, InversionResult
from .pti import PTI, PTI_RECIPES, PTIRecipe, PTIResult
from .recipes import FULL, MAX_STEPS, PAPER, QUICK, RECIPES, InversionRecipe, recipe_named

__all__ = ["FULL", "HybridInverter", "MAX_STEPS", "InversionDiverged", "InversionRecipe", "InversionResult", "PAPER", "PTI",
           "PTI_RECIPES", "PTIRecipe", "PTIResult", "QUICK", "RECIPES", "recipe_named"]
