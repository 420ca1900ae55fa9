"""Generator contract: shapes, truncation, noise modes, errors, and the S / F space hooks."""

from __future__ import annotations

import pytest
import torch

import latentspaces as ls
from conftest import randomize_


def test_contract_attributes_and_shapes(small_G):
    G = small_G
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (64, 64, 8, 32)
    assert G.w_avg.shape == (64,)
    z = torch.randn(3, 64)
    assert G.mapping(z).shape == (3, 64)
    assert G.mapping(torch.randn(3, 8, 64)).shape == (3, 8, 64)
    ws = G.broadcast(G.mapping(z))
    assert ws.shape == (3, 8, 64)
    for mode in ("const", "random", "none"):
        assert G.synthesis(ws, noise_mode=mode).shape == (3, 3, 32, 32)
    assert G(z).shape == (3, 3, 32, 32)


def test_num_ws_follows_resolution():
    for res, num_ws in [(4, 2), (8, 4), (64, 10), (256, 14)]:
        G = ls.Generator(z_dim=8, w_dim=8, resolution=res, mapping_layers=1, channels={r: 4 for r in (4, 8, 16, 32, 64, 128, 256)})
        assert G.num_ws == num_ws
        out = G.synthesis(torch.randn(1, num_ws, 8))
        assert out.shape == (1, 3, res, res)


def test_per_layer_z_maps_each_layer_separately(small_G):
    z = torch.randn(2, 8, 64)
    w = small_G.mapping(z)
    for layer in range(8):
        assert torch.allclose(w[:, layer], small_G.mapping(z[:, layer]), atol=1e-6)


def test_truncation_with_cutoff(small_G):
    G = small_G
    z = torch.randn(2, 64)
    ws = G.broadcast(G.mapping(z))
    t = G.truncate(ws, 0.5, truncation_cutoff=3)
    assert torch.allclose(t[:, :3], G.w_avg + 0.5 * (ws[:, :3] - G.w_avg), atol=1e-6)
    assert torch.equal(t[:, 3:], ws[:, 3:])
    full = G(z, truncation_psi=0.5, truncation_cutoff=3)
    assert torch.allclose(full, G.synthesis(t), atol=1e-6)
    assert torch.allclose(G.mapping(torch.randn(2, 8, 64), truncation_psi=0.0), G.w_avg.expand(2, 8, 64))
    with pytest.raises(ValueError, match="per-layer"):
        G.mapping(z, truncation_psi=0.5, truncation_cutoff=3)


def test_noise_modes_differ_and_random_is_seeded(small_G):
    ws = small_G.broadcast(small_G.mapping(torch.randn(2, 64)))
    const, none = small_G.synthesis(ws), small_G.synthesis(ws, noise_mode="none")
    assert not torch.allclose(const, none)
    a = small_G.synthesis(ws, noise_mode="random", noise_generator=torch.Generator().manual_seed(5))
    b = small_G.synthesis(ws, noise_mode="random", noise_generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.allclose(a, const)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda G: G.mapping(torch.randn(2, 63)), r"\[N, 64\]"),
        (lambda G: G.mapping(torch.randn(64)), r"\[N, 64\]"),
        (lambda G: G(torch.randn(2, 5, 64)), r"\[N, 8, 64\]"),
        (lambda G: G.synthesis(torch.randn(2, 7, 64)), r"\[N, 8, 64\]"),
        (lambda G: G.synthesis(torch.randn(2, 64)), r"\[N, 8, 64\]"),
        (lambda G: G.synthesis(torch.randn(2, 8, 64), noise_mode="fixed"), "noise_mode"),
        (lambda G: G.broadcast(torch.randn(2, 3, 64)), "expected w"),
    ],
)
def test_wrong_shapes_give_clear_errors(small_G, call, match):
    with pytest.raises(ValueError, match=match):
        call(small_G)


def test_fused_and_nonfused_agree(small_G):
    ws = small_G.broadcast(small_G.mapping(torch.randn(3, 64)))
    a = small_G.synthesis(ws, fused_modconv=True)
    b = small_G.synthesis(ws, fused_modconv=False)
    assert (a - b).abs().max() < 1e-5


def test_float64_generator_agrees_with_float32(small_G):
    ws = small_G.broadcast(small_G.mapping(torch.randn(2, 64)))
    G64 = randomize_(ls.Generator(**small_G.config)).double()
    G64.load_state_dict({k: v.double() for k, v in small_G.state_dict().items()})
    assert (small_G.synthesis(ws).double() - G64.synthesis(ws.double())).abs().max() < 1e-5


# ----------------------------------------------------------------------------- S space hooks
def test_styles_round_trip(small_G):
    ws = small_G.broadcast(small_G.mapping(torch.randn(2, 64)))
    styles = small_G.synthesis.styles_from_ws(ws)
    assert list(styles) == small_G.synthesis.layer_names
    for name, s in styles.items():
        assert s.shape == (2, small_G.synthesis.style_dims[name])
    assert torch.allclose(small_G.synthesis.synthesize_styles(styles), small_G.synthesis(ws), atol=1e-6)
    styles["b8.conv1"] = styles["b8.conv1"] + 0.5
    assert not torch.allclose(small_G.synthesis.synthesize_styles(styles), small_G.synthesis(ws))
    del styles["b16.torgb"]
    with pytest.raises(KeyError, match="b16.torgb"):
        small_G.synthesis.synthesize_styles(styles)


def test_w_index_table(small_G):
    idx = small_G.synthesis.w_index
    assert idx["b4.conv1"] == 0 and idx["b4.torgb"] == 1
    for k, res in [(3, 8), (4, 16), (5, 32)]:
        assert (idx[f"b{res}.conv0"], idx[f"b{res}.conv1"], idx[f"b{res}.torgb"]) == (2 * k - 5, 2 * k - 4, 2 * k - 3)


# ----------------------------------------------------------------------------- F space hooks
def _count_calls(G):
    calls = []
    for name in G.synthesis.layer_names:
        G.synthesis.layer(name).register_forward_hook(lambda m, i, o, n=name: calls.append(n))
    return calls


def test_features_and_from_feature_run_only_their_layers(small_G):
    G, layer = small_G, "b16.conv0"
    ws = G.broadcast(G.mapping(torch.randn(2, 64)))
    calls = _count_calls(G)
    f = G.synthesis.features(ws, layer)
    assert f.shape == (2, 16, 16, 16) and G.synthesis.feature_shape(layer) == (16, 16, 16)
    assert calls == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0"]
    calls.clear()
    G.synthesis.from_feature(f, ws, layer)
    assert calls == ["b16.conv1", "b16.torgb", "b32.conv0", "b32.conv1", "b32.torgb"]
    assert G.synthesis.w_indices_after(layer) == [4, 5, 6, 7]


def test_from_feature_equals_generator_when_lower_rgb_is_zero(small_G):
    """With the toRGB layers below the F layer silenced, starting from G's own feature is exact."""
    G = small_G
    for res in (4, 8):
        torgb = getattr(G.synthesis, f"b{res}").torgb
        torgb.weight.zero_()
        torgb.bias.zero_()
    ws = G.broadcast(G.mapping(torch.randn(2, 64)))
    f = G.synthesis.features(ws, "b16.conv0")
    assert (G.synthesis.from_feature(f, ws, "b16.conv0") - G.synthesis(ws)).abs().max() < 1e-6


def test_from_feature_dropped_skip_is_the_only_difference(small_G):
    """On an unmodified G the two differ by exactly the upsampled RGB from below the F layer."""
    G = small_G
    ws = G.broadcast(G.mapping(torch.randn(2, 64)))
    f = G.synthesis.features(ws, "b16.conv0")
    diff = G.synthesis(ws) - G.synthesis.from_feature(f, ws, "b16.conv0")
    assert diff.abs().max() > 1e-3  # the skip carries signal
    # Recompute the lower skip: the image of an 8x8 generator made of the same lower blocks.
    low = ls.Generator(**{**G.config, "resolution": 8, "channels": {4: 32, 8: 32}})
    low.load_state_dict({k: v for k, v in G.state_dict().items() if k in low.state_dict()})
    from latentspaces.generator.ops import upsample2d

    skip = low.synthesis(ws[:, :4])
    filt = G.synthesis.b16.resample_filter
    assert torch.allclose(diff, upsample2d(upsample2d(skip, filt), filt), atol=1e-5)


def test_feature_layer_errors(small_G):
    ws = small_G.broadcast(small_G.mapping(torch.randn(1, 64)))
    with pytest.raises(ValueError, match="not a conv layer"):
        small_G.synthesis.features(ws, "b16.torgb")
    with pytest.raises(ValueError, match=r"must be \[N, 16, 16, 16\]"):
        small_G.synthesis.from_feature(torch.zeros(1, 16, 8, 8), ws, "b16.conv0")
