"""Fast paths of the generator ops against their obvious reference implementations (float64)."""

from __future__ import annotations

import pytest
import torch

from latentspaces.generator.ops import (
    bias_act,
    filter2d,
    modulated_conv2d,
    modulated_conv2d_reference,
    setup_filter,
    upfirdn2d_reference,
    upsample2d,
)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 1, 3)])
def test_upsample2d_equals_upfirdn_reference(taps):
    x = _rand(2, 3, 5, 7)
    f = setup_filter(taps).double()
    ref = upfirdn2d_reference(x, f, up=2, padding=(2, 1, 2, 1), gain=4.0)
    out = upsample2d(x, f)
    assert out.shape == (2, 3, 10, 14)
    assert torch.allclose(out, ref, atol=1e-12)


def test_upsample_preserves_constant_images():
    x = torch.ones(1, 1, 6, 6, dtype=torch.float64)
    out = upsample2d(x, setup_filter((1, 3, 3, 1)).double())
    assert torch.allclose(out[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8, dtype=torch.float64))


def test_filter2d_is_convolution_not_correlation():
    """An asymmetric filter is flipped, as upfirdn2d does."""
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1.0
    f = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    y = filter2d(x, f, (1, 1, 1, 1))
    # Convolution with a right-shifted delta moves the impulse right.
    assert y[0, 0, 2, 3] == 1.0 and y.sum() == 1.0


# (up, demodulate, kernel): the 3x3 convs, the upsampling conv0, and the 1x1 toRGB.
@pytest.mark.parametrize("up, demodulate, k", [(1, True, 3), (2, True, 3), (1, False, 1), (2, False, 3)])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_matches_reference(up, demodulate, k, fused):
    n, i, o = 3, 5, 4
    x, w, s = _rand(n, i, 6, 6, seed=1), _rand(o, i, k, k, seed=2), _rand(n, i, seed=3) + 1
    noise = _rand(n, 1, 6 * up, 6 * up, seed=4)
    f = setup_filter((1, 3, 3, 1)).double()
    kw = dict(demodulate=demodulate, up=up, padding=k // 2, resample_filter=f, noise=noise)
    out = modulated_conv2d(x, w, s, fused=fused, **kw)
    ref = modulated_conv2d_reference(x, w, s, **kw)
    assert out.shape == (n, o, 6 * up, 6 * up)
    assert torch.allclose(out, ref, atol=1e-10)


def test_modulated_conv2d_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not agree"):
        modulated_conv2d(torch.zeros(2, 4, 8, 8), torch.zeros(3, 5, 3, 3), torch.ones(2, 4))


def test_bias_act_lrelu_gain_and_clamp():
    x = torch.tensor([[-1.0, 2.0, 1000.0]]).reshape(1, 3)
    y = bias_act(x, torch.zeros(3), "lrelu", gain=2 ** 0.5, clamp=256.0)
    assert torch.allclose(y, torch.tensor([[-0.2 * 2 ** 0.5, 2 * 2 ** 0.5, 256.0]]))
    with pytest.raises(ValueError, match="activation"):
        bias_act(x, None, "gelu")
