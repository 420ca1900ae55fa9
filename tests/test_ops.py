"""Fast paths of the generator ops against their obvious reference implementations (float64)."""

from __future__ import annotations

import pytest
import torch

from latentspaces.generator.ops import (
    bias_act,
    conv2d,
    filter2d,
    layer_options,
    lrelu_,
    modulated_conv2d,
    modulated_conv2d_reference,
    setup_filter,
    to_conv_layout,
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
@pytest.mark.parametrize("folded", [True, False])
@pytest.mark.parametrize("epilogue", [{}, {"bias": True, "gain": 2 ** 0.5}, {"bias": True, "noise": False}])
def test_modulated_conv2d_matches_reference(up, demodulate, k, fused, folded, epilogue):
    n, i, o = 3, 5, 4
    x, w, s = _rand(n, i, 6, 6, seed=1), _rand(o, i, k, k, seed=2), _rand(n, i, seed=3) + 1
    noise = _rand(n, 1, 6 * up, 6 * up, seed=4) if epilogue.get("noise", True) else None
    bias = _rand(o, seed=5) if epilogue.get("bias") else None
    f = setup_filter((1, 3, 3, 1)).double()
    kw = dict(demodulate=demodulate, up=up, padding=k // 2, resample_filter=f, noise=noise, bias=bias,
              gain=epilogue.get("gain", 1.0))
    with layer_options(folded_epilogues=folded):
        out = modulated_conv2d(x, w, s, fused=fused, **kw)
    ref = modulated_conv2d_reference(x, w, s, **kw)
    assert out.shape == (n, o, 6 * up, 6 * up)
    assert torch.allclose(out, ref, atol=1e-10)


def test_symmetric_filter2d_padding_equals_explicit_padding():
    """filter2d lets the convolution pad when the padding is symmetric: the same as padding first."""
    x, f = _rand(2, 3, 9, 9, seed=6), setup_filter((1, 3, 3, 1)).double()
    for padding in [(1, 1, 1, 1), (2, 2, 1, 1), (0, 0, 0, 0)]:
        ref = upfirdn2d_reference(x, f, padding=padding, gain=2.0)
        assert torch.allclose(filter2d(x, f, padding, gain=2.0), ref, atol=1e-12)
    assert filter2d(x, f, (2, 1, 2, 1)).shape == (2, 3, 9, 9)


@pytest.mark.parametrize("channels_last", [True, False])
def test_conv_layout_changes_strides_not_values(channels_last):
    x, w = _rand(2, 6, 8, 8, seed=7).float(), _rand(5, 6, 3, 3, seed=8).float()
    with layer_options(channels_last=channels_last):
        y = conv2d(x, w, padding=1)
        assert to_conv_layout(x).is_contiguous(memory_format=torch.channels_last) == channels_last
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.allclose(y, torch.nn.functional.conv2d(x, w, padding=1), atol=1e-5)


def test_lrelu_gain_folds_into_the_preactivation():
    """lrelu(a) * g == lrelu(a * g) for g > 0: what the folded epilogues rely on."""
    a = _rand(1000, seed=9)
    g = 2 ** 0.5
    assert torch.allclose(lrelu_(a * g), bias_act(a, None, "lrelu", gain=g), atol=1e-14)


def test_modulated_conv2d_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not agree"):
        modulated_conv2d(torch.zeros(2, 4, 8, 8), torch.zeros(3, 5, 3, 3), torch.ones(2, 4))


def test_bias_act_lrelu_gain_and_clamp():
    x = torch.tensor([[-1.0, 2.0, 1000.0]]).reshape(1, 3)
    y = bias_act(x, torch.zeros(3), "lrelu", gain=2 ** 0.5, clamp=256.0)
    assert torch.allclose(y, torch.tensor([[-0.2 * 2 ** 0.5, 2 * 2 ** 0.5, 256.0]]))
    with pytest.raises(ValueError, match="activation"):
        bias_act(x, None, "gelu")
