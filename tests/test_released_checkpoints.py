"""Released checkpoints (pSp, e4e, HFGI; BDInvert's encoder and genforce generators) as the releases write them:
read, and refused when damaged.

The files here are written in the release's layout by hand (its key names, shapes and opts, at the 1024 px
layout: ADA and Ec of HFGI at 256 px fusing the 64 px layer's 512 channels); that the official networks give the
same outputs for the same weights is measured against the official code itself (BENCHMARKS.md).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import latentspaces as ls
from encoders import FEncoder, HFGI, WPlusEncoder, load_encoder, load_head
from encoders.released import load_bdinvert_encoder, load_e4e_encoder, load_hfgi_head, load_psp_encoder
from latentspaces.generator.ops import setup_filter
from latentspaces.errors import CheckpointError

# our prefix -> the released prefix (HFGI's psp_encoders.ResidualEncoder / ResidualAligner), written out here
# independently of the reader's table
RELEASED_PREFIXES = {
    "consultation.trunk.0.": "residue.conv_layer1.", "consultation.trunk.1.": "residue.conv_layer2.",
    "consultation.trunk.2.": "residue.conv_layer3.", "consultation.scale.": "residue.condition_scale3.",
    "consultation.shift.": "residue.condition_shift3.", "ada.stem.": "grid_align.conv_layer1.",
    "ada.down.0.": "grid_align.conv_layer2.", "ada.down.1.": "grid_align.conv_layer3.",
    "ada.down.2.": "grid_align.conv_layer4.", "ada.up.0.": "grid_align.dconv_layer1.",
    "ada.up.1.": "grid_align.dconv_layer2.", "ada.up.2.": "grid_align.dconv_layer3.",
}


def released_name(key: str) -> str:
    prefix = next(p for p in RELEASED_PREFIXES if key.startswith(p))
    return RELEASED_PREFIXES[prefix] + key[len(prefix):]


def _randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return module.eval()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(path, HFGI head at the 1024 px layout, e4e encoder with 4 ws) of an HFGI release file: encoder.*,
    decoder.* (a stand-in tensor), residue.*, grid_align.*, latent_avg [num_ws, 512], opts."""
    torch.manual_seed(0)
    head = _randomized(HFGI(4, 512, "b64.conv0", 512, 64, 256), 1)
    e4e = _randomized(WPlusEncoder(4, 512, backbone="ir_se50", style_channels=512), 2)
    latent_avg = 0.1 * torch.randn(512)
    state = {**{f"encoder.{k}": v for k, v in e4e.state_dict().items() if k != "w_avg"},
             **{released_name(k): v for k, v in head.state_dict().items()},
             "decoder.style.1.weight": torch.zeros(512, 512)}
    path = tmp_path_factory.mktemp("released") / "hfgi_ffhq.pt"
    torch.save({"state_dict": state, "latent_avg": latent_avg.repeat(4, 1),
                "opts": {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True, "dataset_type": "ffhq_encode"}},
               path)
    with torch.no_grad():
        e4e.w_avg.copy_(latent_avg)
    return path, head, e4e


def test_release_layout_names_and_sizes(release):
    path, head, _ = release
    state = torch.load(path, weights_only=True)["state_dict"]
    ada = {k: v for k, v in state.items() if k.startswith("grid_align.")}
    assert len(ada) == 295 and sum(v.numel() for k, v in ada.items() if "running" not in k and "num_batches" not in k) \
        == 596_801
    assert state["grid_align.dconv_layer3.2.res_layer.4.weight"].shape == (3,)          # the third unit: 3 -> 3
    assert state["residue.condition_scale3.2.weight"].shape == (512, 512, 3, 3)


def test_hfgi_release_reads_into_the_released_head(release):
    path, written, _ = release
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        head = load_head(path, method="hfgi")
    assert isinstance(head, HFGI) and head.meta["source"] == "released checkpoint hfgi_ffhq.pt"
    assert (head.layer, head.layer_channels, head.layer_resolution, head.input_size) == ("b64.conv0", 512, 64, 256)
    assert (head.ada_decoder_units, head.rendered_resize, head.width, head.num_ws) == (3, "bilinear", 1.0, 4)
    for key, value in written.state_dict().items():
        assert torch.equal(head.state_dict()[key], value), key
    torch.manual_seed(3)
    dmap, rendered = torch.rand(1, 3, 256, 256) - 0.5, torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        for ours, theirs in zip(head.modulation(dmap, rendered), written.modulation(dmap, rendered)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    left = " ".join(str(w.message) for w in said)
    assert "read residue.*, grid_align.*" in left and "decoder.*" in left and "encoder.* (the W+ encoder" in left
    assert load_hfgi_head(str(path)).config == head.config
    with pytest.raises(CheckpointError, match="holds a HFGI head, not a sdic one"):
        load_head(path, method="sdic")


def test_e4e_of_an_hfgi_release_says_what_it_left(release):
    path, _, e4e = release
    with pytest.warns(UserWarning, match=r"read encoder\.\*; left decoder\.\* .*grid_align\.\* \(HFGI's ADA"):
        encoder = load_encoder(path)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), e4e(x), rtol=0, atol=0)


def _resaved(path, tmp_path, change) -> str:
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    out = tmp_path / "damaged.pt"
    torch.save(ckpt, out)
    return str(out)


def test_damaged_releases_are_refused_naming_the_tensor(release, tmp_path):
    path = release[0]

    def put(key, value):
        return lambda ckpt: ckpt["state_dict"].__setitem__(key, value)

    nan = torch.full((3,), float("nan"))
    cases = [
        (put("grid_align.dconv_layer3.2.res_layer.4.weight", nan), load_hfgi_head,
         r"grid_align\.dconv_layer3\.2\.res_layer\.4\.weight holds 3 non-finite"),
        (lambda c: c["state_dict"].pop("residue.condition_shift3.0.bias"), load_hfgi_head,
         r"missing \['residue\.condition_shift3\.0\.bias'\]"),
        (put("grid_align.dconv_layer4.0.res_layer.1.weight", torch.zeros(1)), load_hfgi_head,
         r"unexpected \['grid_align\.dconv_layer4"),
        (put("grid_align.dconv_layer3.2.res_layer.4.weight", torch.zeros(4)), load_hfgi_head,
         r"wrong shapes \['grid_align\.dconv_layer3\.2\.res_layer\.4\.weight'\]"),
        (put("residue.conv_layer1.0.weight", torch.zeros(32, 3, 3, 3, dtype=torch.int32)), load_hfgi_head,
         r"residue\.conv_layer1\.0\.weight has dtype int32"),
        (lambda c: [c["state_dict"].pop(k) for k in list(c["state_dict"]) if k.startswith("residue.")], load_head,
         r"no compensation head this project reads \(parts: decoder, encoder, grid_align"),
        # e4e (item 4 of the issue): a NaN weight and an infinite latent_avg are named, not run
        (put("encoder.body.3.res_layer.1.weight", torch.full((128, 64, 3, 3), float("nan"))), load_e4e_encoder,
         r"encoder\.body\.3\.res_layer\.1\.weight holds 73728 non-finite"),
        (lambda c: c.__setitem__("latent_avg", torch.full((4, 512), float("inf"))), load_e4e_encoder,
         r"latent_avg holds 2048 non-finite"),
    ]
    for change, reader, message in cases:
        damaged = _resaved(path, tmp_path, change)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(CheckpointError, match=message):
                reader(damaged)
    with pytest.raises(CheckpointError, match="holds a WPlusEncoder, not a compensation head"):
        load_head("default-wplus")


@pytest.mark.parametrize("num_ws", [4, pytest.param(18, marks=pytest.mark.slow)])   # 18: the 1024 px layout
def test_psp_encoder_reads_each_row_from_its_own_style_block(tmp_path, num_ws):
    """pSp's GradualStyleEncoder: the e4e weight names, but ws[:, i] = style_i(its pyramid level) + latent_avg, no
    shared w0 (pSp.forward with start_from_latent_avg); without it the rows alone. Sketch encoders are refused."""
    torch.manual_seed(0)
    written = _randomized(WPlusEncoder(num_ws, 512, backbone="ir_se50", style_channels=512, codes="rows"), 4)
    latent_avg = torch.randn(512)
    state = {f"encoder.{k}": v for k, v in written.state_dict().items() if k != "w_avg"}
    opts = {"encoder_type": "GradualStyleEncoder", "input_nc": 3, "label_nc": 0, "start_from_latent_avg": True}
    torch.save({"state_dict": state, "latent_avg": latent_avg.repeat(num_ws, 1), "opts": opts}, tmp_path / "psp.pt")
    torch.save({"state_dict": state, "opts": {**opts, "start_from_latent_avg": False}}, tmp_path / "psp_no_avg.pt")
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        psp, bare = load_encoder(tmp_path / "psp.pt"), load_encoder(tmp_path / "psp_no_avg.pt")
    assert psp.codes == "rows" and psp.meta["source"] == "pSp checkpoint psp.pt"
    with torch.no_grad():
        c3, p2, p1 = written.pyramid(x)
        rows = torch.stack([written.styles[i](c3 if i < 3 else p2 if i < 7 else p1) for i in range(num_ws)], dim=1)
        torch.testing.assert_close(psp(x), rows + latent_avg, rtol=0, atol=1e-6)
        torch.testing.assert_close(bare(x), rows, rtol=0, atol=1e-6)
    for change, message in (({"input_nc": 1, "label_nc": 19}, "reads 1 input channels"),
                            ({"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}, "last-layer-into-W")):
        torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": {**opts, **change}}, tmp_path / "other.pt")
        with pytest.raises(CheckpointError, match=message):
            load_psp_encoder(str(tmp_path / "other.pt"))
    with pytest.raises(CheckpointError, match="not 'Encoder4Editing'"):
        load_e4e_encoder(str(tmp_path / "psp.pt"))
    nan = {**state, "encoder.styles.2.linear.weight": torch.full_like(state["encoder.styles.2.linear.weight"], float("nan"))}
    torch.save({"state_dict": nan, "latent_avg": latent_avg, "opts": opts}, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=r"encoder\.styles\.2\.linear\.weight holds \d+ non-finite"):
        load_psp_encoder(str(tmp_path / "damaged.pt"))


def genforce_state(G) -> dict:
    """G's weights under genforce's names and conventions, written out here (independently of the reader):
    affine biases without the +1, conv0 kernels unflipped, noise [1, 1, R, R], const [1, C, 4, 4], filters."""
    ours, sd = {k: v.detach().clone() for k, v in G.state_dict().items()}, {}
    kernel = (setup_filter([1, 3, 3, 1]) * 4)[None, None]
    for i in range(G.config["mapping_layers"]):
        sd[f"mapping.dense{i}.weight"], sd[f"mapping.dense{i}.bias"] = ours[f"mapping.fc{i}.weight"], ours[f"mapping.fc{i}.bias"]
    sd["truncation.w_avg"] = ours["mapping.w_avg"]
    sd["synthesis.early_layer.const"] = ours["synthesis.b4.const"][None]
    resolutions = sorted(int(r) for r in G.config["channels"])
    names = {"synthesis.layer0": "synthesis.b4.conv1", "synthesis.output0": "synthesis.b4.torgb"}
    for k, r in enumerate(resolutions[1:], start=1):
        names.update({f"synthesis.layer{2 * k - 1}": f"synthesis.b{r}.conv0", f"synthesis.layer{2 * k}": f"synthesis.b{r}.conv1",
                      f"synthesis.output{k}": f"synthesis.b{r}.torgb"})
    for theirs, mine in names.items():
        up = mine.endswith("conv0")
        sd[f"{theirs}.weight"] = ours[f"{mine}.weight"].flip([2, 3]) if up else ours[f"{mine}.weight"]
        sd[f"{theirs}.bias"] = ours[f"{mine}.bias"]
        sd[f"{theirs}.style.weight"] = ours[f"{mine}.affine.weight"]
        sd[f"{theirs}.style.bias"] = ours[f"{mine}.affine.bias"] - 1
        if not mine.endswith("torgb"):
            sd[f"{theirs}.noise_strength"] = ours[f"{mine}.noise_strength"]
            sd[f"{theirs}.noise"] = ours[f"{mine}.noise_const"][None, None]
        if up:
            sd[f"{theirs}.filter.kernel"] = kernel.clone()
    sd["synthesis.upsample.kernel"] = kernel.clone()
    return sd


def _genforce_round_trip(G, tmp_path):
    path = tmp_path / "stylegan2_ffhq.pth"
    state = genforce_state(G)
    torch.save({"generator": state, "discriminator": {"d": torch.zeros(1)}, "generator_smooth": state}, path)
    with pytest.warns(UserWarning, match="read the generator 'generator_smooth'; left discriminator, generator"):
        loaded = ls.load_generator(path)
    ws = G.broadcast(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))))
    with torch.no_grad():
        torch.testing.assert_close(loaded.synthesis(ws), G.synthesis(ws), rtol=0, atol=1e-5)
    torch.testing.assert_close(loaded.w_avg, G.w_avg, rtol=0, atol=0)
    return path, state


def test_genforce_generator_reads_with_its_conventions(small_G, tmp_path):
    path, state = _genforce_round_trip(small_G, tmp_path)
    damaged = [
        ({"synthesis.layer3.weight": torch.full_like(state["synthesis.layer3.weight"], float("nan"))},
         r"synthesis\.layer3\.weight holds"),
        ({"synthesis.layer1.filter.kernel": torch.ones(1, 1, 4, 4)}, r"layer1\.filter\.kernel is not the standard"),
        ({"synthesis.layer2.noise": torch.zeros(1, 8, 8)}, r"synthesis\.layer2\.noise' has shape \[1, 8, 8\]"),
        ({"synthesis.extra.weight": torch.zeros(1)}, r"unexpected genforce keys 'synthesis\.extra\.weight'"),
    ]
    for change, message in damaged:
        torch.save({"generator_smooth": {**state, **change}}, tmp_path / "damaged.pth")
        with pytest.raises(CheckpointError, match=message):
            ls.load_generator(tmp_path / "damaged.pth")


@pytest.mark.slow
def test_genforce_generator_at_1024_px(tmp_path):
    """The users' scale: a random config-f 1024 px generator through genforce's layout and back."""
    torch.manual_seed(0)
    G = ls.Generator(resolution=1024).eval().requires_grad_(False)
    _genforce_round_trip(G, tmp_path)


def test_bdinvert_encoder_reads_its_training_checkpoint(tmp_path):
    """encoder_simple's flat Sequential ('model.N') at the released size (b16.conv0 at 1024 px: 72 tensors,
    12,399,872 parameters) into FEncoder's released layout, the training state left with a warning."""
    written = _randomized(FEncoder(512, 16, layer="b16.conv0"), 5)
    assert len(written.state_dict()) == 72 and sum(p.numel() for p in written.parameters()) == 12_399_872

    def bdinvert(key: str) -> str:   # blocks.B.P -> model.{10B + P}; head.H -> model.{30 + H}
        part, a, rest = key.split(".", 2)
        if part == "blocks":
            b, rest = a, rest
            p, rest = rest.split(".", 1)
            return f"model.{10 * int(b) + int(p)}.{rest}"
        return f"model.{30 + int(a)}.{rest}"

    state = {bdinvert(k): v for k, v in written.state_dict().items()}
    assert {"model.0.bias", "model.31.running_var", "model.33.weight"} <= set(state)
    path = tmp_path / "encoder_final.pth"
    torch.save({"encoder": state, "optimizer": {"state": {}, "param_groups": []}, "scheduler": {"step_size": 2000},
                "epoch": 10000}, path)
    with pytest.warns(UserWarning, match="read 'encoder'; left epoch, optimizer, scheduler"):
        encoder = load_encoder(path)
    assert isinstance(encoder, FEncoder) and encoder.layer == "b16.conv0" and encoder.layout == "released"
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), written(x), rtol=0, atol=0)
    # BDInvert's preprocessing: a 256 px target goes through PIL's Lanczos on uint8 to the 128 px input
    assert encoder.resize == "lanczos" and encoder.config["resize"] == "lanczos"
    target = (torch.rand(1, 3, 256, 256) * 255).round() / 127.5 - 1
    pixels = ((target[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    by_pil = torch.from_numpy(np.array(Image.fromarray(pixels).resize((128, 128), Image.LANCZOS))).permute(2, 0, 1)
    with torch.no_grad():
        torch.testing.assert_close(encoder(target), written(by_pil[None].float() / 127.5 - 1), rtol=0, atol=1e-6)
    assert written.resize == "antialias" and FEncoder.config_before_field["resize"] == "antialias"
    for change, message in (({"model.33.bias": torch.full((512,), float("inf"))}, r"model\.33\.bias holds 512 non-finite"),
                            ({"model.31.weight": torch.ones(7)}, r"wrong shapes \['model\.31\.weight'\]")):
        torch.save({"encoder": {**state, **change}}, tmp_path / "damaged.pth")
        with pytest.raises(CheckpointError, match=message):
            load_bdinvert_encoder(str(tmp_path / "damaged.pth"))
    missing = {k: v for k, v in state.items() if k != "model.0.bias"}
    torch.save({"encoder": missing}, tmp_path / "old.pth")
    with pytest.raises(CheckpointError, match=r"missing \['model\.0\.bias'\]"):
        load_bdinvert_encoder(str(tmp_path / "old.pth"))


def test_pti_pivot_reads_as_wplus_codes(small_G, tmp_path):
    """PTI saves each pivot as torch.save(w_pivot): [1, num_ws, w_dim], rows equal, requires_grad set."""
    from latentspaces.spaces import read_code_file

    w = small_G.mapping(torch.randn(1, small_G.z_dim, generator=torch.Generator().manual_seed(6)))
    pivot = small_G.broadcast(w).clone().requires_grad_(True) * 1.0   # a non-leaf, as PTI's projector returns it
    torch.save(pivot, tmp_path / "0.pt")
    codes = read_code_file(tmp_path / "0.pt", generator=small_G)
    assert codes.space == "WPlus" and codes.images is None and not codes.code.w.requires_grad
    torch.testing.assert_close(codes.code.w, pivot.detach(), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(ls.WPlus(small_G).synthesize(codes.code), small_G.synthesis(pivot), rtol=0, atol=0)
    for bad, message in ((torch.zeros(1, 3, small_G.w_dim), "the generator takes"),
                         (torch.full((1, small_G.num_ws, small_G.w_dim), float("nan")), "ws holds"),
                         ({"w": pivot.detach()}, "holds a dict")):
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=message):
            read_code_file(tmp_path / "bad.pt", generator=small_G)
