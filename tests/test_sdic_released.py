"""SDIC's released head (the official DIPN and DICN, `encoders.sdic_released`): its compensation and edit rule, and
its checkpoint read as the release writes it, refused when damaged.

The release files here are written by hand in the release's layout (the `DIP.*` / `SAF.*` names, the unused
sub-networks the official constructors build, dummy encoder, decoder and loss parts, `opts`, `latent_avg`); that the
official networks give the same outputs for the same weights is measured against the official code itself (the
module's docstring has the numbers).
"""

from __future__ import annotations

import json
from typing import Dict, List

import pytest
import torch
import torch.nn.functional as F

import latentspaces as ls
from encoders.released import is_sdic_unused_key, read_psp_checkpoint, sdic_from_state
from encoders.sdic_released import SDICReleased
from latentspaces.errors import CheckpointError
from latentspaces.interfaces import CompensationHead

# our prefix -> the released prefix (the official SDIC's `DIP` and `SAF`), written out here apart from the reader's
RELEASED = {"dipn.": "DIP.", "dicn.": "SAF."}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def released_name(key: str) -> str:
    prefix = next(p for p in RELEASED if key.startswith(p))
    return RELEASED[prefix] + key[len(prefix):]


def _bn(prefix: str, c: int) -> Dict[str, List[int]]:
    return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c],
            f"{prefix}.running_var": [c], f"{prefix}.num_batches_tracked": []}


def unused_released_shapes(c: int = 512, num_ws: int = 18) -> Dict[str, List[int]]:
    """The released keys of the sub-networks SDIC's inference never runs, with their shapes (the official
    constructors build them; c: the fused layer's channels, num_ws: Affine1d's rows)."""
    dip = {"stem_2.0.conv.weight": [32, 3, 3, 3], **_bn("stem_2.0.bn", 32), "stem_2.1.weight": [32, 32, 3, 3],
           **_bn("stem_2.2", 32),
           "stem_4.0.conv.weight": [48, 32, 3, 3], **_bn("stem_4.0.bn", 48), "stem_4.1.weight": [48, 48, 3, 3],
           **_bn("stem_4.2", 48),
           "spx.0.weight": [64, 9, 4, 4], "spx.0.bias": [9],
           "spx_2.conv1.conv.weight": [32, 32, 4, 4], **_bn("spx_2.conv1.bn", 32),
           "spx_2.conv2.conv.weight": [64, 64, 3, 3], **_bn("spx_2.conv2.bn", 64),
           "spx_4.0.conv.weight": [32, 96, 3, 3], **_bn("spx_4.0.bn", 32), "spx_4.1.weight": [32, 32, 3, 3],
           **_bn("spx_4.2", 32),
           "semantic.0.conv.weight": [32, 96, 3, 3], **_bn("semantic.0.bn", 32), "semantic.1.weight": [8, 32, 1, 1],
           "agg.conv.weight": [8, 8, 1, 5, 5], **_bn("agg.bn", 8),
           **_bn("hourglass_fusion.conv1_up.bn", 1)}
    saf = {"aff1.0.conv.weight": [c, c, 3, 3], **_bn("aff1.0.bn", c), "aff1.1.weight": [c, c, 3, 3],
           "conv1.weight": [c, c, 3, 3],
           "aff2.0.conv.weight": [c, 2 * c, 3, 3], **_bn("aff2.0.bn", c), "aff2.1.weight": [c, c, 3, 3],
           "aff1d.agg.0.weight": [num_ws, num_ws, 3], "aff1d.agg.0.bias": [num_ws], **_bn("aff1d.agg.1", num_ws)}
    return {**{f"DIP.{k}": s for k, s in dip.items()}, **{f"SAF.{k}": s for k, s in saf.items()}}


def _parameters(shapes: Dict[str, List[int]], part: str) -> int:
    return sum(int(torch.Size(s).numel()) for k, s in shapes.items()
               if k.startswith(part + ".") and not k.endswith(BUFFERS))


def _randomized(head: SDICReleased, seed: int) -> SDICReleased:
    """Every weight moved, BN statistics and PReLU slopes drawn, so that each tensor changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in head.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.is_floating_point():
                t.add_(0.05 * torch.randn(t.shape, generator=gen))
    return head.eval()


def release_state(head: SDICReleased, seed: int = 3) -> Dict[str, torch.Tensor]:
    """`head` in the release's layout: DIP.* and SAF.*, the unused keys (random), dummy other parts."""
    gen = torch.Generator().manual_seed(seed)
    unused = {k: (torch.zeros(s, dtype=torch.int64) if k.endswith("num_batches_tracked")
                  else torch.randn(s, generator=gen))
              for k, s in unused_released_shapes(head.layer_channels, head.num_ws).items()}
    return {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3),
            **{released_name(k): v.clone() for k, v in head.state_dict().items()}, **unused,
            "decoder.style.1.weight": torch.zeros(head.w_dim, head.w_dim),
            "lpips_loss.net.mean": torch.zeros(1, 3, 1, 1), "id_loss.facenet.input_layer.0.weight": torch.zeros(4)}


def small_release_head() -> SDICReleased:
    """The released layout (b64.conv0 read at 256 px) with small sizes: 4 x 64 ws, 32 layer channels, 16 rows."""
    return SDICReleased(num_ws=4, w_dim=64, layer_channels=32, shift_channels=4, shift_size=16)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(path, written head) of a small SDIC release file."""
    head = _randomized(small_release_head(), 1)
    path = tmp_path_factory.mktemp("released") / "SDIC_ffhq.pt"
    latent_avg = 0.1 * torch.randn(head.w_dim, generator=torch.Generator().manual_seed(2))
    torch.save({"state_dict": release_state(head), "latent_avg": latent_avg.repeat(head.num_ws, 1),
                "opts": {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True, "maxdisp": 192,
                         "dataset_type": "ffhq_encode"}}, path)
    return path, head


def _outputs(head: SDICReleased, side: int = 16):
    """DIPN and DICN at a small side (both networks run at any side divisible by 8; DICN's G_l at side / 4)."""
    gen = torch.Generator().manual_seed(5)
    x, x0 = (torch.rand(1, 3, side, side, generator=gen) * 2 - 1 for _ in range(2))
    g_l = torch.randn(1, head.layer_channels, side // 4, side // 4, generator=gen)
    ws = torch.randn(1, head.num_ws, head.w_dim, generator=gen)
    with torch.no_grad():
        dmap = head.dipn(x, x0)
        return (dmap, *head.dicn(dmap, g_l, ws))


def _read(state: dict, where: str = "SDIC_ffhq.pt") -> SDICReleased:
    return sdic_from_state(state, where)


# ------------------------------------------------------------------------------------------------ the release
def test_released_sizes_and_parameter_counts():
    head = SDICReleased()
    assert head.config == dict(num_ws=18, w_dim=512, layer="b64.conv0", layer_channels=512, layer_resolution=64,
                               input_size=256, shift_channels=18, shift_size=64)
    dipn = sum(p.numel() for p in head.dipn.parameters())
    dicn = sum(p.numel() for p in head.dicn.parameters())
    assert (dipn, dicn) == (1_713_154, 7_449_268)     # what the released forward uses
    assert head.dicn.aff1d.sen[0].weight.shape == (72, 144, 1)     # Affine1d(18, 144)
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in head.dipn.named_children()}
    assert counts == {"feature1": 177_344, "feature2": 177_344, "feature_up": 748_448, "conv": 13_920, "desc": 1_176,
                      "corr_stem": 232, "hourglass_fusion": 584_448, "rgb1": 9_280, "rgb": 962}
    # with the unused sub-networks, the release's totals and key counts
    unused = unused_released_shapes()
    ours = {released_name(k): list(v.shape) for k, v in head.state_dict().items()}
    assert not set(unused) & set(ours)
    assert dipn + _parameters(unused, "DIP") == 1_887_357 and dicn + _parameters(unused, "SAF") == 21_608_118
    assert sum(k.startswith("DIP.") for k in {**ours, **unused}) == 389
    assert sum(k.startswith("SAF.") for k in {**ours, **unused}) == 79
    assert all(is_sdic_unused_key(k) for k in unused) and not any(is_sdic_unused_key(k) for k in ours)


def test_unused_key_patterns_stop_at_the_module_name():
    for key in ("SAF.aff1d.sen.0.weight", "SAF.conv_layer1.0.weight", "SAF.att.0.conv.weight",
                "DIP.hourglass_fusion.agg_0.0.conv.weight", "DIP.hourglass_fusion.conv1_up.conv.weight",
                "DIP.hourglass_fusion.CGF_8.semantic.0.conv.weight", "DIP.spx_3.weight", "encoder.agg.weight"):
        assert not is_sdic_unused_key(key), key
    for key in ("SAF.aff1.1.weight", "SAF.aff1d.agg.1.running_var", "DIP.agg.conv.weight", "DIP.spx_2.conv1.conv.weight",
                "DIP.hourglass_fusion.conv1_up.bn.weight"):
        assert is_sdic_unused_key(key), key


def test_release_reads_into_the_released_head(release):
    path, written = release
    state, opts = read_psp_checkpoint(str(path), "SDIC checkpoint")
    assert opts["encoder_type"] == "Encoder4Editing"
    head = sdic_from_state(state, str(path))
    assert head.config == written.config and not head.training
    ours = head.state_dict()
    assert ours.keys() == written.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in written.state_dict().items())
    for a, b in zip(_outputs(head), _outputs(written)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the door users take: load_head finds the head by the file's parts and says what it left
    from encoders import load_head

    with pytest.warns(UserWarning, match=r"read DIP\.\*, SAF\.\*; left decoder\.\* .*encoder\.\* \(the W\+ encoder"):
        loaded = load_head(path, method="sdic")
    assert isinstance(loaded, SDICReleased) and loaded.meta["source"] == "released checkpoint SDIC_ffhq.pt"
    with pytest.raises(CheckpointError, match="holds a SDICReleased head, not a hfgi one"):
        load_head(path, method="hfgi")


def test_release_sizes_come_from_the_file(release):
    path, written = release
    state, _ = read_psp_checkpoint(str(path), "SDIC checkpoint")
    state.pop("latent_avg")     # without latent_avg: the release's hard-coded 512, which these rows do not fit
    with pytest.raises(CheckpointError, match="no square map"):
        _read(state)
    state["latent_avg"] = torch.zeros(5, 64)
    with pytest.raises(CheckpointError, match="latent_avg has 5 rows"):
        _read(state)


@pytest.mark.parametrize("damage, named", [
    ("nan", "DIP.feature1.fe1.conv.weight"),
    ("missing", "SAF.att.1.weight"),
    ("shape", "DIP.desc.weight"),
    ("unexpected", "DIP.hourglass_fusion.conv1_up.conv.bias"),
    ("unexpected", "SAF.aff3.weight"),
    ("dtype", "DIP.corr_stem.bn.num_batches_tracked"),
])
def test_damaged_releases_are_refused_naming_the_tensor(release, damage, named):
    path, _ = release
    state, _ = read_psp_checkpoint(str(path), "SDIC checkpoint")
    if damage == "nan":
        state[named] = state[named].clone()
        state[named][0, 0, 0, 0] = float("nan")
    elif damage == "missing":
        del state[named]
    elif damage == "shape":
        state[named] = torch.zeros(24, 48, 3, 3)
    elif damage == "unexpected":
        state[named] = torch.zeros(3)
    elif damage == "dtype":
        state[named] = torch.tensor(1.0)
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        _read(state)


def test_a_file_without_the_head_or_with_unreadable_sizes_is_refused(release):
    path, _ = release
    state, _ = read_psp_checkpoint(str(path), "SDIC checkpoint")
    with pytest.raises(CheckpointError, match=r"no 'SAF\.\*' weights"):
        _read({k: v for k, v in state.items() if not k.startswith("SAF.")})
    state["SAF.semantic.3.weight"] = torch.zeros(32)
    with pytest.raises(CheckpointError, match=r"SAF\.semantic\.3\.weight is missing or not a 4-D"):
        _read(state)


def test_unused_released_tensors_are_not_read(release):
    path, written = release
    state, _ = read_psp_checkpoint(str(path), "SDIC checkpoint")
    state["SAF.aff2.0.conv.weight"] = torch.full_like(state["SAF.aff2.0.conv.weight"], float("nan"))
    del state["DIP.spx.0.bias"]
    head = _read(state)
    assert all(torch.equal(head.state_dict()[k], v) for k, v in written.state_dict().items())


def test_full_size_release_reads():
    written = SDICReleased()
    head = _read({**release_state(written), "latent_avg": torch.zeros(18, 512)})
    assert head.config == written.config
    assert torch.equal(head.dicn.aff1d.att2[3].weight, written.dicn.aff1d.att2[3].weight)


# ------------------------------------------------------------------------------------------------ the head
def small_head(G) -> SDICReleased:
    """The released network for the 32 px test generator: b8.conv0 (32 channels at 8 px) read at 32 px."""
    c, h, _ = G.synthesis.feature_shape("b8.conv0")
    torch.manual_seed(0)
    return SDICReleased(G.num_ws, G.w_dim, "b8.conv0", c, h, 4 * h, shift_channels=4, shift_size=16).eval()


def _inputs(G, n: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ws = G.broadcast(G.mapping(torch.randn(n, G.z_dim, generator=gen)))
    ws = ws + 0.3 * torch.randn(ws.shape, generator=gen)
    return torch.rand(n, 3, G.resolution, G.resolution, generator=gen) * 2 - 1, ws


def test_compensate_replaces_the_layer_and_corrects_the_codes(small_G):
    head = small_head(small_G)
    assert isinstance(head, CompensationHead) and head.layers == ("b8.conv0",) and head.bind(torch.nn.Identity()) is head
    assert json.loads(json.dumps(head.config)) == head.config and SDICReleased(**head.config).config == head.config
    x, ws = _inputs(small_G)
    with torch.no_grad():
        comp = head.compensate(small_G, x, ws)
        x0 = small_G.synthesis(ws)
        g_l = small_G.synthesis.features(ws, "b8.conv0")
        dmap = head.dipn(x, x0.clamp(-1, 1))              # input_size = R: nothing resized
        f_hat, ws_c = head.dicn(dmap, g_l, ws)
        replaced = small_G.synthesis.with_edits(ws_c, {"b8.conv0": lambda g: f_hat})
        given = head.compensate(small_G, x, ws, x0=x0)
    assert comp.image.shape == x.shape and bool(torch.isfinite(comp.image).all())
    assert comp.cache["g_l"].shape == comp.cache["f_hat"].shape == (2, 32, 8, 8)
    torch.testing.assert_close(comp.cache["g_l"], g_l, rtol=0, atol=0)
    torch.testing.assert_close(comp.cache["dmap"], dmap, rtol=0, atol=0)
    torch.testing.assert_close(comp.ws, ws_c, rtol=0, atol=0)
    torch.testing.assert_close(comp.image, replaced, rtol=0, atol=0)
    torch.testing.assert_close(given.image, comp.image, rtol=0, atol=0)
    assert (comp.ws - ws).abs().max() > 1e-3 and (comp.image - x0).abs().max() > 1e-3


def test_edit_is_the_released_rule(small_G):
    head = small_head(small_G)
    x, ws = _inputs(small_G)
    delta = 0.5 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        comp = head.compensate(small_G, x, ws)
        residual = comp.cache["f_hat"] - comp.cache["g_l"]
        for d in (torch.zeros_like(ws), delta):   # layer l: G_l(W' + d) + F^ - G_l(W)
            expected = small_G.synthesis.with_edits(comp.ws + d, {"b8.conv0": lambda g: g + residual})
            torch.testing.assert_close(head.edit(small_G, comp, d), expected, rtol=0, atol=0)
        # delta 0 returns the compensated image where the codes are not corrected (A = B = 0: W' = W)
        head.dicn.aff1d.att[3].weight.zero_()
        head.dicn.aff1d.att2[3].weight.zero_()
        comp = head.compensate(small_G, x, ws)
        torch.testing.assert_close(comp.ws, ws, rtol=0, atol=0)
        torch.testing.assert_close(head.edit(small_G, comp, torch.zeros_like(ws)), comp.image, rtol=0, atol=1e-5)


def test_inputs_shrink_as_released():
    head = SDICReleased(8, 64, "b8.conv0", 32, 8, 32, shift_channels=4, shift_size=16)
    x = torch.rand(2, 3, 64, 64) * 3 - 1.5
    plain = F.interpolate(x.clamp(-1, 1), size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(head.shrink_render(x), plain, rtol=0, atol=0)        # clamp, then plain bilinear
    filtered = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(head.resize(x), filtered, rtol=0, atol=0)     # like PIL's resize
    small = x[..., :32, :32]                                                          # at r already: unchanged
    assert torch.equal(head.resize(small), small) and torch.equal(head.shrink_render(small), small.clamp(-1, 1))


def test_probe_and_refusals(small_G):
    head = small_head(small_G)
    with torch.no_grad():
        probe = head.probe()
    assert probe["dmap"].shape == (1, 3, 32, 32) and probe["f_hat"].shape == (1, 32, 8, 8)
    assert probe["ws"].shape == (1, small_G.num_ws, small_G.w_dim)
    assert all(bool(torch.isfinite(v).all()) for v in probe.values())
    x, ws = _inputs(small_G, n=1)
    with pytest.raises(ValueError, match=r"x must be \[1, 3, 32, 32\]"):
        head.compensate(small_G, x[..., :16, :16], ws)
    with pytest.raises(ValueError, match="ws must be"):
        head.compensate(small_G, x, ws[:, :4])
    with pytest.raises(ValueError, match="18 x 512 ws"):
        SDICReleased().compensate(small_G, x, ws)
    with pytest.raises(ValueError, match="input_size must be 4 \\* layer_resolution"):
        SDICReleased(input_size=128)
    with pytest.raises(ValueError, match="multiple of w_dim"):
        SDICReleased(shift_size=63)
    with pytest.raises(ValueError, match="puts out 64 px"):
        SDICReleased(layer_resolution=32, input_size=128)
    with pytest.raises(ValueError, match="side divisible by 8"):
        head.dipn(torch.zeros(1, 3, 36, 36), torch.zeros(1, 3, 36, 36))
    with pytest.raises(ValueError, match="G_l must be"):
        head.dicn(torch.zeros(1, 3, 32, 32), torch.zeros(1, 32, 16, 16), ws)


@pytest.mark.slow
def test_compensate_and_edit_at_1024_px(monkeypatch):
    """The released sizes on a random config-f 1024 px generator, batch 1 (about 30 s on a 2-core CPU)."""
    torch.manual_seed(0)
    G = ls.Generator(resolution=1024).eval().requires_grad_(False)
    head = SDICReleased().eval()
    touched = []
    with_edits = G.synthesis.with_edits

    def spy(ws, edits, **kwargs):
        touched.append(tuple(edits))
        return with_edits(ws, edits, **kwargs)

    monkeypatch.setattr(G.synthesis, "with_edits", spy)
    x = torch.rand(1, 3, 1024, 1024) * 2 - 1
    ws = G.broadcast(G.mapping(torch.randn(1, G.z_dim)))
    with torch.no_grad():
        comp = head.compensate(G, x, ws)
        edited = head.edit(G, comp, 0.5 * torch.randn_like(ws))
        g_l = G.synthesis.features(ws, "b64.conv0")
    assert touched and all(t == ("b64.conv0",) for t in touched)
    assert comp.image.shape == edited.shape == (1, 3, 1024, 1024) and comp.ws.shape == (1, 18, 512)
    assert comp.cache["dmap"].shape == (1, 3, 256, 256) and comp.cache["f_hat"].shape == (1, 512, 64, 64)
    torch.testing.assert_close(comp.cache["g_l"], g_l, rtol=0, atol=0)
    assert all(bool(torch.isfinite(t).all()) for t in (comp.image, edited, comp.ws, *comp.cache.values()))
