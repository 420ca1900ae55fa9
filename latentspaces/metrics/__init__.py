"""Metrics and perceptual distances."""

from .perceptual import LPIPS, MissingWeightsError, PerceptualDistance, make_perceptual, resize_for_lpips

__all__ = ["LPIPS", "MissingWeightsError", "PerceptualDistance", "make_perceptual", "resize_for_lpips"]
