"""One lookup by name per kind of model: perceptual distances and identity embedders, one error type."""

from __future__ import annotations

import pytest

from latentspaces.errors import ModelChoiceError
from latentspaces.metrics.d_features import DiscriminatorFeatures
from latentspaces.metrics.identity import IDENTITY_CHOICES, make_identity
from latentspaces.metrics.perceptual import (DEFAULT_PERCEPTUAL, PERCEPTUAL_CHOICES, make_perceptual,
                                             perceptual_name)


@pytest.fixture
def no_lpips(monkeypatch):
    monkeypatch.setenv("LATENTSPACES_NO_LPIPS", "1")   # as on a machine without LPIPS's backbone


def test_auto_is_the_default_and_falls_back_to_d_features_at_64_px(no_lpips):
    assert DEFAULT_PERCEPTUAL == "auto" and set(PERCEPTUAL_CHOICES) >= {"auto", "d-features", "lpips-vgg", "none"}
    assert perceptual_name() == perceptual_name("auto", 64) == "d-features"
    assert isinstance(make_perceptual("auto", 64), DiscriminatorFeatures)
    assert make_perceptual("none") is None and make_perceptual(None) is None


@pytest.mark.parametrize("name, resolution, message", [
    ("auto", 256, "'auto' (the default) found no perceptual distance for 256 px images: LPIPS-VGG needs"),
    ("auto", None, "found no perceptual distance for another generator's images"),
    ("d-features", 1024, "'d-features' is the default model's perceptual distance (64 px images), not one for 1024"),
    ("lpips", 64, "unknown perceptual distance 'lpips'; choose one of auto, d-features"),
])
def test_a_name_that_does_not_fit_is_one_error_type(no_lpips, name, resolution, message):
    with pytest.raises(ModelChoiceError) as info:
        make_perceptual(name, resolution)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_identity_lookup():
    assert set(IDENTITY_CHOICES) == {"dlib", "facenet", "none"}
    assert make_identity("none") is None and make_identity(None) is None
    with pytest.raises(ModelChoiceError, match="unknown identity model 'arcface'; choose one of dlib, facenet, none"):
        make_identity("arcface")
