"""Metrics and perceptual distances."""

from .perceptual import (DEFAULT_PERCEPTUAL, LPIPS, PERCEPTUAL_CHOICES, MissingWeightsError, PerceptualDistance,
                         make_perceptual, perceptual_name, resize_for_lpips)

__all__ = ["DEFAULT_PERCEPTUAL", "LPIPS", "MissingWeightsError", "PERCEPTUAL_CHOICES", "PerceptualDistance",
           "make_perceptual", "perceptual_name", "resize_for_lpips"]
