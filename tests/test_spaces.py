"""The nine latent spaces: codes, synthesis, projection, edits, penalties, gradients."""

from __future__ import annotations

import math

import pytest
import torch

import latentspaces as ls
from latentspaces import Direction


@pytest.fixture(scope="module")
def G():
    from conftest import randomize_

    torch.manual_seed(0)
    G = ls.Generator(z_dim=64, w_dim=64, resolution=32, mapping_layers=2, channels={4: 32, 8: 32, 16: 16, 32: 8})
    return randomize_(G).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def pn_stats(G):
    return ls.PNStats.fit(G, n_samples=20_000, use_cache=False, progress=False)


def make(name, G, pn_stats):
    return ls.SPACES[name](G, stats=pn_stats) if name == "PN" else ls.SPACES[name](G)


ALL = list(ls.SPACES)
Z_TYPE = ["Z", "ZPlus", "FZ", "FZPlus"]


@pytest.mark.parametrize("name", ALL)
def test_every_space_synthesizes_projects_and_edits(G, pn_stats, name):
    space = make(name, G, pn_stats)
    code = space.random(3, seed=1)
    assert space.synthesize(code).shape == (3, 3, 32, 32)
    again = space.random(3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(code.tensors(), again.tensors()))
    assert not torch.equal(space.random(3, seed=2).tensors()[-1], code.tensors()[-1])
    space.project_(code)
    dim = space.dim if name == "S" else code[space.edit_field].shape[-1]
    kind = space.kind
    d = Direction(torch.randn(dim, generator=torch.Generator().manual_seed(3)), kind)
    edited = space.edit(code, d, 1.5)
    assert edited.fields == code.fields
    assert not torch.allclose(space.synthesize(edited), space.synthesize(code))
    assert torch.allclose(space.synthesize(space.edit(code, d, 0.0)), space.synthesize(code), atol=1e-5)
    assert space.synthesize(space.mean(2)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_exactly_the_code(G, pn_stats, name):
    space = make(name, G, pn_stats)
    code = space.random(2, seed=0).requires_grad_(True)
    loss = space.synthesize(code).square().sum() + sum(t.sum() for t in space.penalty(code).values())
    loss.backward()
    for field, t in code.items():
        assert t.grad is not None and t.grad.abs().sum() > 0, field
    assert all(p.grad is None for p in G.parameters())


@pytest.mark.parametrize("name", Z_TYPE)
def test_z_codes_stay_on_the_sphere(G, pn_stats, name):
    space = make(name, G, pn_stats)
    code = space.random(4, seed=0).requires_grad_(True)
    radius = math.sqrt(G.z_dim)
    opt = torch.optim.Adam(code.tensors(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        space.synthesize(code).square().mean().backward()
        opt.step()
        space.project_(code)
        assert ((code.z.norm(dim=-1) - radius).abs() / radius).max() < 1e-5
    d = Direction(torch.randn(G.z_dim) * 3, "z")
    for substeps in (1, 10):
        edited = space.edit(code, d, 2.0, substeps=substeps)
        assert ((edited.z.norm(dim=-1) - radius).abs() / radius).max() < 1e-5


def test_substepped_edit_differs_from_single_step_and_converges(G, pn_stats):
    space = ls.ZPlus(G)
    code = space.random(2, seed=0)
    d = Direction(torch.randn(G.z_dim) * 2, "z")
    one = space.edit(code, d, 2.0)
    many = space.edit(code, d, 2.0, substeps=100)
    more = space.edit(code, d, 2.0, substeps=400)
    assert (one.z - many.z).abs().max() > 1e-3
    assert (many.z - more.z).abs().max() < (one.z - many.z).abs().max()


def test_direction_kind_and_shape_mismatches_are_refused(G, pn_stats):
    w_dir = Direction(torch.randn(64), "w")
    with pytest.raises(ValueError, match="'w'-space direction cannot edit ZPlus"):
        ls.ZPlus(G).edit(ls.ZPlus(G).random(1), w_dir, 1.0)
    with pytest.raises(ValueError, match="'z'-space direction cannot edit FWPlus"):
        ls.FWPlus(G).edit(ls.FWPlus(G).random(1), Direction(torch.randn(64), "z"), 1.0)
    with pytest.raises(ValueError, match=r"direction \[64\]"):
        ls.WPlus(G).edit(ls.WPlus(G).random(1), torch.randn(32), 1.0)
    with pytest.raises(ValueError, match="layer-range edits need a per-layer space"):
        ls.W(G).edit(ls.W(G).random(1), w_dir, 1.0, layers=[0, 1])
    fz = ls.FZPlus(G)
    with pytest.raises(ValueError, match="not editable"):
        fz.edit(fz.random(1), Direction(torch.randn(64), "z"), 1.0, layers=[0])


def test_layer_range_edits_touch_only_those_layers(G, pn_stats):
    space = ls.WPlus(G)
    code = space.random(2)
    edited = space.edit(code, Direction(torch.ones(64), "w"), 1.0, layers=[2, 3])
    changed = (edited.w - code.w).abs().sum(-1).sum(0) > 0
    assert changed.tolist() == [i in (2, 3) for i in range(G.num_ws)]
    fz = ls.FZPlus(G)
    c = fz.random(1)
    e = fz.edit(c, Direction(torch.randn(64), "z"), 1.0, layers=[fz.code_layers[-1]])
    assert torch.equal(e.z[:, :-1], c.z[:, :-1]) and torch.equal(e.f, c.f)


def test_per_layer_direction_rows(G, pn_stats):
    space = ls.ZPlus(G)
    code = space.random(1)
    rows = torch.zeros(G.num_ws, 64)
    rows[4] = 5.0
    edited = space.edit(code, Direction(rows, "z"), 1.0)
    changed = ((edited.z - code.z).abs().sum(-1) > 0)[0]
    assert changed.tolist() == [i == 4 for i in range(G.num_ws)]


def test_pn_whitening_is_near_identity_on_fresh_samples(G, pn_stats):
    z = torch.randn(20_000, 64, generator=torch.Generator().manual_seed(123))
    v = pn_stats.whiten(G.mapping(z))
    cov = torch.cov(v.T)
    assert (cov - torch.eye(64)).abs().max() < 0.15
    assert v.mean(0).abs().max() < 0.05
    w = G.mapping(z[:10])
    assert torch.allclose(pn_stats.unwhiten(pn_stats.whiten(w)), w, atol=1e-4)


def test_pn_cache_round_trip(G, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTSPACES_CACHE", str(tmp_path))
    a = ls.PNStats.fit(G, n_samples=3000, progress=False)
    files = list((tmp_path / "pn").glob("*.safetensors"))
    assert len(files) == 1
    b = ls.PNStats.fit(G, n_samples=3000, progress=False)
    assert torch.equal(a.components, b.components)


def test_pn_penalty_for_w_codes(G, pn_stats):
    space = ls.WPlus(G, pn=pn_stats, pn_lambda=0.01)
    code = space.random(2)
    pen = space.penalty(code)["pn"]
    assert pen.shape == (2,) and (pen > 0).all()
    assert torch.allclose(pen, 0.01 * pn_stats.whiten(code.w).square().mean((1, 2)))
    pn_space = ls.PN(G, stats=pn_stats)
    assert torch.allclose(pn_space.synthesize(pn_space.from_ws(code.w)), space.synthesize(code), atol=1e-4)


def test_f_spaces_reproduce_g_from_its_own_feature(G, pn_stats):
    ws = G.broadcast(G.mapping(torch.randn(2, 64, generator=torch.Generator().manual_seed(0))))
    space = ls.FWPlus(G)
    assert space.layer == "b8.conv0" and space.code_layers == [2, 3, 4, 5, 6, 7]
    code = space.from_ws(ws)
    diff = (space.synthesize(code) - G.synthesis(ws)).abs().max()
    # Only the dropped 4x4 RGB skip separates them; silencing it makes them equal.
    assert diff > 1e-4
    G2 = ls.Generator(**G.config)
    G2.load_state_dict(G.state_dict())
    G2.synthesis.b4.torgb.weight.data.zero_()
    G2.synthesis.b4.torgb.bias.data.zero_()
    s2 = ls.FWPlus(G2.eval())
    assert (s2.synthesize(s2.from_ws(ws)) - G2.synthesis(ws)).abs().max() < 1e-5


def test_f_layer_default_and_choice():
    big = ls.Generator(z_dim=8, w_dim=8, resolution=128, mapping_layers=1, channels={r: 4 for r in (4, 8, 16, 32, 64, 128)})
    assert ls.FZPlus(big).layer == "b16.conv0" and ls.FZPlus(big).f_shape == (4, 16, 16)
    assert ls.FZPlus(big, layer="b32.conv1").code_layers == [7, 8, 9, 10, 11]


def test_fz_from_feature_and_shape_errors(G, pn_stats):
    space = ls.FZ(G)
    f = torch.randn(2, *space.f_shape)
    code = space.from_feature(f)
    assert code.z.shape == (2, 64) and torch.equal(code.f, f)
    assert abs(code.z.norm(dim=-1) - 8.0).max() < 1e-4
    with pytest.raises(ValueError, match="base code f must be"):
        space.from_feature(torch.randn(2, 3, 8, 8))


def test_mean_z_maps_near_w_avg(G, pn_stats):
    space = ls.Z(G)
    z = space.mean(1).z
    rand = G.mapping(space.random(256).z)
    assert (G.mapping(z) - G.w_avg).norm() < (rand - G.w_avg).norm(dim=1).min()


def test_s_space_channel_edit_and_layers(G, pn_stats):
    space = ls.S(G)
    code = space.random(2)
    assert torch.allclose(space.synthesize(code), G.synthesis(G.broadcast(G.mapping(
        torch.randn(2, 64, generator=torch.Generator().manual_seed(0))))), atol=1e-5)
    d = space.channel_direction("b8.conv1", 3)
    edited = space.edit(code, Direction(d, "s"), 2.0)
    delta = edited.s - code.s
    assert delta.abs().sum() == 4.0 and delta[:, space.slices["b8.conv1"].start + 3].eq(2.0).all()
    masked = space.edit(code, Direction(torch.ones(space.dim), "s"), 1.0, layers=[0])
    assert (masked.s - code.s).abs().sum(0).nonzero().numel() == 32  # b4.conv1 (w0): 32 channels


def test_truncation_inside_synthesis(G, pn_stats):
    plain, trunc = ls.ZPlus(G), ls.ZPlus(G, truncation_psi=0.7, truncation_cutoff=4)
    code = plain.random(2)
    ws = plain.to_ws(code)
    assert torch.allclose(trunc.synthesize(code), G.synthesis(G.truncate(ws, 0.7, 4)), atol=1e-6)


def test_the_cached_start_point_is_reused_and_a_broken_cache_is_searched_again(G, tmp_path, monkeypatch):
    import warnings

    import latentspaces as ls
    from latentspaces.spaces.z import mean_z
    monkeypatch.setenv("LATENTSPACES_CACHE", str(tmp_path))
    first = mean_z(ls.ZPlus(G))
    cached = list((tmp_path / "mean_z").iterdir())
    assert len(cached) == 1
    assert torch.equal(mean_z(ls.ZPlus(G)), first)           # read back, not searched again
    cached[0].write_bytes(b"not a safetensors file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = mean_z(ls.ZPlus(G))
    assert torch.allclose(again, first) and any("unusable" in str(w.message) for w in caught)
