"""dlib identity similarity on a real photograph (scikit-image's astronaut)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentspaces.metrics.identity import DlibIdentity


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    x = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return x[..., 0:256, 128:384]  # the face region, 256 x 256


@pytest.fixture(scope="module")
def ident():
    return DlibIdentity()


def test_same_image_scores_one_and_detects(ident, astronaut):
    s = ident(astronaut, astronaut)
    assert s.shape == (1,) and abs(s.item() - 1) < 1e-5
    assert ident.last_detected.tolist() == [True]


def test_degradations_lower_similarity_monotonically(ident, astronaut):
    gen = torch.Generator().manual_seed(0)
    noisy = [(astronaut + s * torch.randn(astronaut.shape, generator=gen)).clamp(-1, 1) for s in (0.05, 0.6)]
    batch_x = torch.cat([astronaut, astronaut])
    sims = ident(batch_x, torch.cat(noisy))
    assert sims.shape == (2,)
    assert 1.0 > sims[0] > sims[1]


def test_small_images_are_upscaled(ident, astronaut):
    small = F.interpolate(astronaut, size=64, mode="area")
    assert ident.embed(small).shape == (1, 128)
    assert ident(small, small).item() == pytest.approx(1.0, abs=1e-5)


def test_shape_errors(ident, astronaut):
    with pytest.raises(ValueError, match="equal shape"):
        ident(astronaut, astronaut[..., :128, :128])
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        ident.embed(astronaut[0])


def test_reference_cache_never_serves_a_different_tensor(ident, astronaut):
    gen = torch.Generator().manual_seed(1)
    sims = []
    for s in (0.05, 0.6):  # fresh reference tensors of equal shape, created and freed in turn
        ref = (astronaut + s * torch.randn(astronaut.shape, generator=gen)).clamp(-1, 1)
        sims.append(ident(astronaut, ref).item())
        del ref
    assert sims[0] > sims[1]
