"""Declared interfaces: space capabilities and manifolds, the synthesis network's layer hooks, the
protocols the encoders, heads and metrics implement, and the defects the restructuring fixed."""

from __future__ import annotations

import pytest
import torch

import latentspaces as ls
from encoders import HFGI, SDIC, FEncoder, GradStyle, ReGANIE, WPlusEncoder
from latentspaces import Direction
from latentspaces.directions import ganspace
from latentspaces.generator import synthesis
from latentspaces.interfaces import CodeInitializer, CompensationHead, IdentitySimilarity, PerceptualDistance
from latentspaces.spaces.base import WS_LAYOUTS
from latentspaces.spaces.manifolds import Euclidean, Sphere, WhitenedChart


@pytest.fixture(scope="module")
def pn_stats(request):
    from conftest import randomize_

    torch.manual_seed(0)
    G = ls.Generator(z_dim=64, w_dim=64, resolution=32, mapping_layers=2, channels={4: 32, 8: 32, 16: 16, 32: 8})
    G = randomize_(G).eval().requires_grad_(False)
    return G, ls.PNStats.fit(G, n_samples=20_000, use_cache=False, progress=False)


def test_every_space_declares_its_capabilities(pn_stats):
    G, stats = pn_stats
    for name in ls.SPACE_ORDER:
        space = ls.build_space(name, G, stats)
        assert space.ws_layout in WS_LAYOUTS, name
        assert isinstance(space.base_fields, tuple)
        code = space.random(2, seed=0)
        if space.ws_layout == "none":
            with pytest.raises(NotImplementedError):
                space.from_ws(G.broadcast(G.w_avg[None]))
        else:  # codes from the ws of a random w reproduce its image (F spaces: without the RGB skip from below)
            w = G.mapping(torch.randn(2, G.z_dim))
            c = space.from_ws(w if space.ws_layout == "shared" else G.broadcast(w))
            if space.feature_layer is None:
                torch.testing.assert_close(space.synthesize(c), G.synthesis(G.broadcast(w)), atol=2e-4, rtol=0)
        if space.feature_layer is None:
            with pytest.raises(NotImplementedError):
                space.from_feature(torch.zeros(1))
            assert space.base_fields == ()
        else:
            f = G.synthesis.features(G.broadcast(G.w_avg[None].expand(2, -1)), space.feature_layer)
            assert space.from_feature(f).f.shape == f.shape and space.base_fields == ("f",)
        for field in code.fields:  # every field lives on a declared manifold
            m = space.manifold(field)
            assert isinstance(m, (Euclidean, Sphere, WhitenedChart))
            assert isinstance(m, Sphere) == (field in space.spherical_fields)
    with pytest.raises(ValueError, match="unknown space"):
        ls.build_space("Q", G)


def test_sphere_manifold():
    m = Sphere(3.0)
    x = m.projx(torch.randn(4, 7))
    torch.testing.assert_close(x.norm(dim=-1), torch.full((4,), 3.0))
    y = m.retr(x, torch.randn(4, 7))
    torch.testing.assert_close(y.norm(dim=-1), torch.full((4,), 3.0))
    z = torch.randn(2, 5)
    assert m.projx_(z) is z and torch.allclose(z.norm(dim=-1), torch.full((2,), 3.0))
    with pytest.raises(ValueError, match="radius"):
        Sphere(0)


def test_pn_edits_step_in_w_through_the_chart(pn_stats):
    """P_N edits are the W edit mapped back: whiten(unwhiten(v) + alpha n), exactly, rows left alone stay."""
    G, stats = pn_stats
    space = ls.PN(G, stats=stats)
    code = space.random(2, seed=1)
    d = Direction(torch.randn(G.w_dim), "w")
    out = space.edit(code, d, 1.5)
    torch.testing.assert_close(out.v, stats.whiten(stats.unwhiten(code.v) + 1.5 * d.vector), rtol=0, atol=0)
    part = space.edit(code, d, 1.5, layers=[0, 1])
    assert torch.equal(part.v[:, 2:], code.v[:, 2:])
    # sub-steps in W (a flat chart of a linear step) sum to the single step
    torch.testing.assert_close(space.edit(code, d, 1.5, substeps=4).v, out.v, atol=2e-3, rtol=1e-5)


def test_euclidean_substeps_equal_one_step_and_z_substeps_stay_on_the_sphere(pn_stats):
    G, _ = pn_stats
    wp = ls.WPlus(G)
    code = wp.random(2, seed=0)
    d = Direction(torch.randn(G.w_dim), "w")
    torch.testing.assert_close(wp.edit(code, d, 2.0, substeps=8).w, wp.edit(code, d, 2.0).w, atol=1e-5, rtol=0)
    zp = ls.FZPlus(G)
    z = zp.edit(zp.random(2, seed=0), Direction(torch.randn(G.z_dim), "z"), 2.0, substeps=10).z
    torch.testing.assert_close(z.norm(dim=-1), torch.full(z.shape[:-1], zp.radius))
    with pytest.raises(ValueError, match="substeps must be >= 1"):
        wp.edit(code, d, 2.0, substeps=0)


def test_multi_layer_hooks_apply_in_layer_order(small_G):
    G = small_G
    ws = G.broadcast(G.mapping(torch.randn(2, G.z_dim)))
    seen = []

    def tag(name, scale):
        def fn(x):
            seen.append(name)
            return x * scale
        return fn

    both = G.synthesis.with_edits(ws, {"b16.conv0": tag("b16", 0.5), "b8.conv1": tag("b8", 1.5)})
    assert seen == ["b8", "b16"]  # layer order, not dict order
    # the same as applying one edit on top of the other's effect
    g8 = G.synthesis.features(ws, "b8.conv1") * 1.5
    manual = G.synthesis.synthesize_styles(G.synthesis.styles_from_ws(ws), edits={
        "b8.conv1": lambda x: g8, "b16.conv0": lambda x: x * 0.5})
    torch.testing.assert_close(both, manual)
    torch.testing.assert_close(G.synthesis.with_edits(ws, {"b8.conv1": lambda x: x}), G.synthesis(ws), rtol=0, atol=0)
    with pytest.raises(ValueError, match="keep its shape"):
        G.synthesis.with_edits(ws, {"b8.conv1": lambda x: x[:, :1]})
    with pytest.raises(ValueError, match="not a conv layer"):
        G.synthesis.with_edits(ws, {"b8.torgb": lambda x: x})


def test_shipped_classes_implement_the_protocols(small_G):
    from latentspaces.metrics.d_features import DiscriminatorFeatures
    from latentspaces.discriminator import Discriminator

    assert isinstance(FEncoder.for_generator(small_G, "b8.conv0", (8, 8, 8)), CodeInitializer)
    assert isinstance(WPlusEncoder.for_generator(small_G, style_channels=8), CodeInitializer)
    base = WPlusEncoder.for_generator(small_G, style_channels=8)
    for head in (SDIC.for_generator(small_G, width=0.25), HFGI.for_generator(small_G, width=0.25),
                 GradStyle.for_generator(small_G, base), ReGANIE.for_generator(small_G, channels={32: 8, 16: 8, 8: 8})):
        assert isinstance(head, CompensationHead) and head.bind(base) is head, type(head).__name__
        assert all(layer in small_G.synthesis.feature_layers for layer in head.layers)
    assert head.layers == ()    # the last, ReGANIE, re-renders: it injects nowhere
    d = DiscriminatorFeatures(Discriminator(32, {32: 8, 16: 8, 8: 8, 4: 8}))
    assert isinstance(d, PerceptualDistance) and isinstance(d, IdentitySimilarity)  # both: a named (x, y) -> [N]


def test_ganspace_scales_z_directions_when_asked(small_G):
    """scale_by_std used to be ignored for Z directions (callers scaled them by hand)."""
    plain = ganspace(small_G, n_samples=3000, n_components=3, kind="z")
    scaled = ganspace(small_G, n_samples=3000, n_components=3, kind="z", scale_by_std=True)
    for a, b in zip(plain, scaled):
        assert torch.equal(b.vector, a.vector * a.meta["std"]) and b.meta["scaled_by_std"] is True
        assert a.meta["scaled_by_std"] is False


def test_the_modulated_conv_default_is_one_constant():
    """It was a method taking an input it ignored; now one module constant says it."""
    assert synthesis.DEFAULT_FUSED_MODCONV is False
    assert not hasattr(synthesis.SynthesisNetwork, "_default_fused")
