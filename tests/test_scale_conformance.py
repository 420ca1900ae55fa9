"""At the users' scale: every space and compensation head on random-weight config-f generators of 256 and
1024 px read from rosinality checkpoints (batch 1, CPU), checked against the layers the papers and their
released code fix:

- F spaces: the output of `b16.conv0` (BDInvert); F holds 4.2% of a 1024 px image's numbers.
- SDIC and HFGI: the first (upsampling) conv of the 64 x 64 block, rosinality `convs[6]` = `b64.conv0`.
- GradStyle: after the 3rd, 6th and 8th blocks at 1024 px (b4 the 1st), the blocks' last convs
  b16/b128/b512.conv1; smaller generators take the same relative depth (b8/b64/b128 at 256 px).
- ReGANIE: image space (it changes no generator layer).
Each head's layers are read twice: from its declaration and from the layers it actually hands the
synthesis network (`with_edits` spied), so a head that declares one layer and edits another fails.
The trainers at 256 px are in test_scale_trainers.py.
"""

from __future__ import annotations

import math
from typing import List

import pytest
import torch

import latentspaces as ls
from conftest import randomize_
from encoders import HFGI, SDIC, GradStyle, ReGANIE, WPlusEncoder
from encoders.gradstyle import gradstyle_blocks
from latentspaces.checkpoints.rosinality import rosinality_state_dict
from latentspaces.generator import Generator

pytestmark = pytest.mark.slow   # 256 and 1024 px networks: CI runs them, the README's command skips them

PAPER_LAYERS_1024 = {"SDIC": ("b64.conv0",), "HFGI": ("b64.conv0",), "GradStyle": ("b16.conv1", "b128.conv1", "b512.conv1"),
                     "ReGANIE": ()}
PAPER_LAYERS_256 = {"SDIC": ("b64.conv0",), "HFGI": ("b64.conv0",), "GradStyle": ("b8.conv1", "b64.conv1", "b128.conv1"),
                    "ReGANIE": ()}
MARK = 7.0   # the rosinality convs.6 weight is filled with this value: it must land in b64.conv0


def config_f_checkpoint(path, resolution: int) -> dict:
    """A rosinality checkpoint of a random config-f generator (channel multiplier 2) with convs.6 marked."""
    torch.manual_seed(resolution)
    src = randomize_(Generator(resolution=resolution), seed=resolution)
    sd = rosinality_state_dict(src)
    sd["convs.6.conv.weight"] = torch.full_like(sd["convs.6.conv.weight"], MARK) / math.sqrt(512 * 9)
    torch.save({"g_ema": sd, "latent_avg": src.w_avg.detach().clone()}, path)
    return sd


def load(tmp_path_factory, resolution: int):
    path = tmp_path_factory.mktemp(f"config_f_{resolution}") / f"stylegan2-config-f-{resolution}.pt"
    sd = config_f_checkpoint(path, resolution)
    G = ls.load_generator(str(path)).eval().requires_grad_(False)
    assert torch.equal(G.synthesis.layer("b64.conv0").weight, sd["convs.6.conv.weight"][0])   # convs[6] is b64.conv0
    return G


@pytest.fixture(scope="module")
def G1024(tmp_path_factory):
    return load(tmp_path_factory, 1024)


@pytest.fixture(scope="module")
def G256(tmp_path_factory):
    return load(tmp_path_factory, 256)


@pytest.fixture(scope="module")
def pn_stats_1024(G1024):
    return ls.PNStats.fit(G1024, n_samples=2048, use_cache=False, progress=False)


def test_config_f_shapes(G1024, G256):
    assert (G1024.num_ws, G1024.w_dim, G1024.synthesis.feature_shape("b64.conv0")) == (18, 512, (512, 64, 64))
    assert G1024.synthesis.feature_shape("b16.conv0") == (512, 16, 16)
    assert (G256.num_ws, G256.synthesis.feature_shape("b128.conv1")) == (14, (256, 128, 128))


# ------------------------------------------------------------------------------------------- spaces
def _check_space(space, G, direction_seed: int = 0) -> None:
    """synthesize(project(code)) at full resolution, finite; one edit along a random direction moves the image
    and leaves the base code f (F spaces) untouched."""
    code = space.project_(space.random(1, seed=3))
    with torch.no_grad():
        x = space.synthesize(code)
        dim = {"z": G.z_dim, "w": G.w_dim, "s": getattr(space, "dim", None)}[space.kind]
        n = torch.randn(dim, generator=torch.Generator().manual_seed(direction_seed))
        edited = space.edit(code, n / n.norm() * math.sqrt(dim), 0.5)
        y = space.synthesize(edited)
    assert x.shape == (1, 3, G.resolution, G.resolution) and torch.isfinite(x).all()
    assert torch.isfinite(y).all() and (y - x).abs().mean() > 1e-4, f"{space.name}: the edit changed nothing"
    if "f" in code.fields:
        assert torch.equal(edited.f, code.f), f"{space.name}: an edit moved the base code"


@pytest.mark.parametrize("name", ls.SPACE_ORDER)
def test_every_space_at_1024(G1024, pn_stats_1024, name):
    space = ls.build_space(name, G1024, pn_stats_1024)
    if ls.spaces.is_f_space(name):
        # BDInvert's F; the detail codes drive ws 4..17 (b16.conv1 reads w[4], b16.torgb w[5], ...)
        assert space.layer == "b16.conv0" and space.code_layers == list(range(4, 18))
        assert round(100 * space.f_share, 1) == 4.2 and "4.2% of the image's" in repr(space)
    elif name == "S":
        assert space.dim == 9088   # StyleSpace's channel count at 1024 px (Wu et al. 2021), toRGB styles included
    _check_space(space, G1024)


def test_every_space_at_256(G256):
    stats = ls.PNStats.fit(G256, n_samples=1024, use_cache=False, progress=False)
    for name in ls.SPACE_ORDER:
        space = ls.build_space(name, G256, stats)
        if ls.spaces.is_f_space(name):
            assert space.layer == "b16.conv0" and round(100 * space.f_share, 1) == 66.7
        _check_space(space, G256)


def test_compare_states_f_size_and_warns_only_when_f_can_hold_the_image(G1024):
    from experiments.studies.space_comparison import f_size_line

    line = f_size_line(G1024, ["W", "FZPlus", "FWPlusPN"])
    assert "F size (FZPlus, FWPlusPN): f at b16.conv0: 512x16x16 = 131,072 numbers, 4.2%" in line
    assert "can hold the image" not in line and f_size_line(G1024, ["W", "WPlus"]) == ""
    small = ls.load_generator("default")
    assert "133.3% of the image's" in f_size_line(small, ["FZ"]) and "can hold the image" in f_size_line(small, ["FZ"])


def test_fwplus_pn_penalises_the_detail_ws(G1024, pn_stats_1024):
    space = ls.FWPlusPN(G1024, stats=pn_stats_1024, pn_lambda=0.01)
    code = space.random(1, seed=1)
    expected = 0.01 * pn_stats_1024.whiten(code.w).square().mean()
    assert torch.allclose(space.penalty(code)["pn"], expected[None]) and ls.FWPlus(G1024).penalty(code) == {}


# ------------------------------------------------------------------------------------------- heads
def _perturbed(head: torch.nn.Module, scale: float = 0.02) -> torch.nn.Module:
    """Zero-initialised last layers made non-zero, so every branch of the head changes the image."""
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return head.eval()


class EditSpy:
    """Records the layers a head hands the synthesis network (`with_edits`), then calls through."""

    def __init__(self, G, monkeypatch):
        self.layers: List[str] = []
        original = G.synthesis.with_edits

        def spy(ws, edits, **kwargs):
            self.layers.extend(edits)
            return original(ws, edits, **kwargs)

        monkeypatch.setattr(G.synthesis, "with_edits", spy)


BUILDERS = {"SDIC": lambda G, base: SDIC.for_generator(G, width=0.25),
            "HFGI": lambda G, base: HFGI.for_generator(G, width=0.25),
            "GradStyle": lambda G, base: GradStyle.for_generator(G, base),
            "ReGANIE": lambda G, base: ReGANIE.for_generator(G)}


def _head(G, name):
    """(an untrained W+ encoder for G, the head `name` built for G the way users build it)."""
    base = WPlusEncoder.for_generator(G).eval()
    return base, BUILDERS[name](G, base)


def _check_head(G, name, expected, monkeypatch):
    base, head = _head(G, name)
    head = _perturbed(head)
    assert head.layers == expected[name], f"{name} touches {head.layers}, the papers' layers are {expected[name]}"
    x = torch.rand(1, 3, G.resolution, G.resolution, generator=torch.Generator().manual_seed(2)) * 2 - 1
    spy = EditSpy(G, monkeypatch)
    with torch.no_grad():
        ws = base(x)
        comp = head.bind(base).compensate(G, x, ws)
        delta = torch.zeros_like(ws)
        delta[:, 8:] = 0.5 * torch.randn(ws.shape[0], ws.shape[1] - 8, ws.shape[2], generator=torch.Generator().manual_seed(4))
        edited = head.edit(G, comp, delta)
        if name == "SDIC":   # the released fusion: G_l of the base codes W, although W' != W
            assert head.fusion == "base" and not torch.allclose(comp.ws, ws)
            torch.testing.assert_close(comp.cache["g_l"], G.synthesis.features(ws, head.layer))
    monkeypatch.undo()
    assert set(spy.layers) == set(expected[name]), f"{name} edited {sorted(set(spy.layers))}"
    from encoders.probing import check_probe   # the load-time output check, at the users' scale
    for net in (base, head):
        check_probe(net, f"{name} at {G.resolution} px")
    for image in (comp.image, edited):
        assert image.shape == (1, 3, G.resolution, G.resolution) and torch.isfinite(image).all()
    assert (edited - comp.image).abs().mean() > 1e-4
    return comp


@pytest.mark.parametrize("name", ["SDIC", "HFGI", "GradStyle", "ReGANIE"])
def test_every_head_at_1024_touches_the_papers_layers(G1024, name, monkeypatch):
    comp = _check_head(G1024, name, PAPER_LAYERS_1024, monkeypatch)
    if name == "SDIC":
        assert comp.cache["f_hat"].shape == (1, 512, 64, 64) and comp.cache["dmap"].shape == (1, 3, 256, 256)
    if name == "HFGI":
        assert comp.cache["gamma"].shape == (1, 512, 64, 64) and comp.cache["dmap"].shape == (1, 3, 256, 256)


@pytest.mark.parametrize("name", ["SDIC", "HFGI", "GradStyle", "ReGANIE"])
def test_every_head_at_256(G256, name, monkeypatch):
    _check_head(G256, name, PAPER_LAYERS_256, monkeypatch)


def test_gradstyle_rule_by_relative_depth():
    assert gradstyle_blocks(1024) == (3, 6, 8)
    assert gradstyle_blocks(64) == (2, 3, 4)        # b8, b16, b32: the shipped default head's layers
    assert gradstyle_blocks(256) == (2, 5, 6) and gradstyle_blocks(512) == (3, 5, 7)
    with pytest.raises(ValueError, match="three distinct blocks"):
        gradstyle_blocks(8)


def test_f_layer_sweep_reaches_the_papers_f_at_1024(G1024):
    """At 1024 px the sweep ends at BDInvert's layer, b16.conv0, whose f (512 x 16 x 16) is 4.2% of the image."""
    from experiments.studies.f_layer_sweep import PAPER_F_SHARE, f_share, sweep_layers

    assert sweep_layers(G1024) == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0"]
    assert G1024.synthesis.feature_shape("b16.conv0") == (512, 16, 16)
    assert f_share(G1024, "b16.conv0") == pytest.approx(PAPER_F_SHARE) == pytest.approx(0.0417, abs=1e-4)


def test_pti_as_released_at_1024(G1024):
    """PTI's released recipe on the config-f generator: the projector's noise maps are optimised on a copy (G's
    own stay), the pivot is one w, and the tuned copy renders finite 1024 px images; steps cut to 2 + 2."""
    from optimizers import PTI

    target = G1024.synthesis(G1024.broadcast(G1024.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)))))
    noise = {k: v.clone() for k, v in G1024.state_dict().items() if k.endswith("noise_const")}
    assert len(noise) == 17
    res = PTI(G1024, per_image=True, progress=False, pivot_steps=2, tune_steps=2).run(target.clamp(-1, 1).detach())
    assert res.pivots.shape == (1, 512) and res.images.shape == (1, 3, 1024, 1024)
    assert torch.isfinite(res.images).all() and res.tune_steps_run == [2]
    assert all(torch.equal(G1024.get_buffer(k), v) for k, v in noise.items())
    tuned = res.generator[0]
    assert torch.equal(tuned.mapping.fc0.weight, G1024.mapping.fc0.weight)   # only the synthesis is tuned
    assert not torch.equal(tuned.synthesis.layer("b64.conv0").weight, G1024.synthesis.layer("b64.conv0").weight)


def test_paper_recipe_truncates_f_zplus_at_1024_as_released(G1024):
    """PAPER.space('FZPlus') on the 1024 px config-f generator: ws 0-7 of 18 pulled toward w_avg at psi 0.7
    (computed by hand), ws 8-17 untouched; with F at b16.conv0 only ws 4-7 of them reach the image."""
    from optimizers import PAPER

    plain, truncated = ls.FZPlus(G1024), PAPER.space("FZPlus", G1024)
    assert truncated.options() == {"truncation_psi": 0.7, "truncation_cutoff": 8} and plain.layer == "b16.conv0"
    code = plain.random(1, seed=0)
    ws = plain.to_ws(code)
    by_hand = ws.clone()
    by_hand[:, :8] = G1024.w_avg + 0.7 * (ws[:, :8] - G1024.w_avg)
    with torch.no_grad():
        expected = G1024.synthesis.from_feature(code.f, by_hand, "b16.conv0", noise_mode="const")
        image = truncated.synthesize(code)
        untruncated = plain.synthesize(code)
    scale = expected.abs().max()   # random config-f weights: values far outside [-1, 1]
    assert (image - expected).abs().max() < 1e-5 * scale < (untruncated - expected).abs().max()


@pytest.mark.parametrize("name", ["WPlus", "FWPlus"])
def test_drag_at_1024_reads_the_released_feature_map_without_the_full_upsampled_map(G1024, name, monkeypatch):
    """DragGAN's released numbers at 1024 px: F is the output of the 6th block (b128.conv1, 256 x 128 x 128 on
    config-f), r1 = 3 and r2 = 12 at 512 px scaled to 6 and 24, stop within 4 px; W+ moves ws 0-5, F/W+ f and
    its detail rows below 6. The fast path never upsamples the whole map (256 x 1024 x 1024 floats, 1 GiB):
    F.interpolate is refused here. Two steps, batch 1."""
    import latentspaces.drag as dragging

    space = ls.build_space(name, G1024)
    code = space.random(1, seed=0)
    seen = {}
    real = space.synthesize

    def spied(c, **kw):
        hook = kw["edits"]["b128.conv1"]
        kw["edits"] = {"b128.conv1": lambda x: seen.setdefault("shape", tuple(x.shape)) and hook(x)}
        return real(c, **kw)
    monkeypatch.setattr(space, "synthesize", spied)
    monkeypatch.setattr(dragging.F, "interpolate", lambda *a, **k: pytest.fail("the full map was upsampled"))
    res = dragging.drag(space, code, [(500, 600)], [(520, 600)], settings=dragging.DragSettings(max_steps=2))
    s = res.settings
    assert (s.feature_layer, s.r1, s.r2, s.tolerance) == ("b128.conv1", 6, 24, 4.0)
    assert seen["shape"] == (1, 256, 128, 128)
    assert res.steps == 2 and res.image.shape == (1, 3, 1024, 1024) and torch.isfinite(res.image).all()
    masks = space.drag_masks(code, range(6))
    rows = masks["w"].flatten().tolist()
    assert rows == ([1.0] * 6 + [0.0] * 12 if name == "WPlus" else [float(i < 6) for i in space.code_layers])
    still = [i for i, ws_index in enumerate(space.code_layers) if ws_index >= 6]   # rows of ws 6 .. 17
    assert torch.equal(res.code.w[:, still], code.w[:, still]) and not torch.equal(res.code.w, code.w)
