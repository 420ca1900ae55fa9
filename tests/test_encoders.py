"""Encoders: F encoder, e4e-style W+ encoder, the encoder file format, and the e4e reader's refusals."""

from __future__ import annotations

import pytest
import torch

import latentspaces as ls
from encoders import encoder_names, FEncoder, WPlusEncoder, load_encoder, read_encoder_meta, save_encoder
from encoders.io import encoder_path
from encoders.released import from_e4e_state_dict, load_e4e_encoder


def test_f_encoder_predicts_the_f_space_base_code(small_G):
    space = ls.FZPlus(small_G)
    enc = FEncoder.for_generator(small_G, space.layer, widths=(8, 8, 8)).eval()
    assert enc.input_size == 8 * space.f_shape[1]
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    code = enc.init_code(space, x)
    assert tuple(code.f.shape) == (3, *space.f_shape)
    torch.testing.assert_close(code.f, enc(x))
    # detail codes start at the space's mean, on the sphere
    torch.testing.assert_close(code.z.norm(dim=-1), torch.full(code.z.shape[:2], small_G.z_dim**0.5), rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="F spaces"):
        enc.init_code(ls.WPlus(small_G), x)
    with pytest.raises(ValueError, match="F layer"):
        enc.init_code(ls.FZPlus(small_G, layer="b16.conv0"), x)


def test_wplus_encoder_progressive_stage_and_init(small_G):
    torch.manual_seed(0)
    enc = WPlusEncoder.for_generator(small_G, style_channels=8).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    ws = enc(x)
    assert ws.shape == (2, small_G.num_ws, small_G.w_dim)
    enc.progressive_stage = 2
    ws2 = enc(x)
    # offsets past the stage are zero: those rows equal w0 (+ w_avg)
    torch.testing.assert_close(ws2[:, 3:], ws2[:, :1].expand(-1, small_G.num_ws - 3, -1))
    torch.testing.assert_close(ws2[:, :3], ws[:, :3])
    assert WPlusEncoder.deltas(ws2)[:, 2:].abs().max() == 0
    # initialises spaces built from ws; single-code spaces get the layer mean; Z-type spaces are refused
    torch.testing.assert_close(enc.init_code(ls.WPlus(small_G), x).w, ws2)
    torch.testing.assert_close(enc.init_code(ls.W(small_G), x).w, ws2.mean(1))
    assert enc.init_code(ls.FWPlus(small_G), x).f.shape[0] == 2
    s_space = ls.S(small_G)
    torch.testing.assert_close(s_space.synthesize(enc.init_code(s_space, x)), small_G.synthesis(ws2))
    with pytest.raises(ValueError, match="cannot initialise"):
        enc.init_code(ls.ZPlus(small_G), x)


def test_encoder_file_roundtrip_half_and_full(tmp_path, small_G):
    torch.manual_seed(1)
    enc = WPlusEncoder.for_generator(small_G, style_channels=8)
    enc.progressive_stage = 4
    for half in (False, True):
        path = tmp_path / f"e{half}.safetensors"
        save_encoder(enc, path, meta={"steps": 7}, half=half)
        head = read_encoder_meta(path)
        assert head["class"] == "WPlusEncoder" and head["meta"] == {"steps": 7}
        back = load_encoder(path)
        assert back.progressive_stage == 4 and back.meta["steps"] == 7
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        diff = (back(x) - enc.eval()(x)).abs().max().item()
        assert diff < (2e-2 if half else 1e-6)


def test_encoder_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no encoder file at no-such-encoder; shipped names"):
        load_encoder("no-such-encoder")
    with pytest.raises(KeyError, match="shipped encoders"):
        encoder_path("no-such-encoder")
    with pytest.raises(FileNotFoundError, match="no encoder file"):
        load_encoder(tmp_path / "missing.safetensors")
    bad = tmp_path / "gen.safetensors"
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(bad), metadata={"format": "latentspaces.generator"})
    with pytest.raises(ls.CheckpointError, match="not a latentspaces.encoder file"):
        load_encoder(bad)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ls.CheckpointError, match="not a readable safetensors"):
        load_encoder(tmp_path / "junk.safetensors")


def test_shipped_encoder_names_resolve_or_explain(monkeypatch, tmp_path):
    import latentspaces.assets as assets

    for name in encoder_names():
        monkeypatch.setattr(assets, "ASSET_DIR", tmp_path)
        with pytest.raises(FileNotFoundError, match="latentspaces train "):
            encoder_path(name)


def test_e4e_reader_refuses_other_layouts(tmp_path):
    other_layout = {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3),
                "encoder.output_layer_2.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="not an e4e Encoder4Editing"):
        from_e4e_state_dict(other_layout)
    shallow = {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3),
               "encoder.styles.0.linear.weight": torch.zeros(512, 512),
               **{f"encoder.body.{i}.res_layer.1.weight": torch.zeros(1) for i in range(13)}}
    with pytest.raises(ValueError, match="only IR-SE50"):
        from_e4e_state_dict(shallow)
    with pytest.raises(ValueError, match="generator needs 14"):
        from_e4e_state_dict(shallow, num_ws=14)
    # A pickle that needs arbitrary code is refused by the weights-only load.
    import collections

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": collections.Counter(a=1), "x": torch.nn.Linear(1, 1)}, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_e4e_encoder(str(path))
    with pytest.raises(ValueError, match="weights-only"):   # load_encoder (the trainers' --base-encoder) reads .pt as e4e
        load_encoder(path)
    torch.save({"state_dict": {}, "opts": {"encoder_type": "GradualStyleEncoder"}}, tmp_path / "psp.pt")
    with pytest.raises(ValueError, match="not 'Encoder4Editing'"):
        load_e4e_encoder(str(tmp_path / "psp.pt"))
    with pytest.raises(ValueError, match="not an pSp GradualStyleEncoder state dict"):   # load_encoder reads pSp's
        load_encoder(tmp_path / "psp.pt")


def test_e4e_weights_of_another_dtype_are_refused_not_cast():
    """docs/formats.md: integer or complex weights are refused; floating ones (fp16, bf16, fp64) read as float32."""
    enc = WPlusEncoder(4, 512, backbone="ir_se50", style_channels=512)
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items() if k != "w_avg"}
    state["latent_avg"] = torch.zeros(512)
    assert torch.equal(from_e4e_state_dict({**state, "encoder.styles.0.linear.weight":
                                            state["encoder.styles.0.linear.weight"].half()}).styles[0].linear.weight,
                       state["encoder.styles.0.linear.weight"].half().float())
    for dtype in (torch.int64, torch.complex64):
        bad = {**state, "encoder.styles.0.linear.weight": state["encoder.styles.0.linear.weight"].to(dtype)}
        with pytest.raises(ValueError, match=f"styles.0.linear.weight has dtype {str(dtype)[6:]}; expected float16"):
            from_e4e_state_dict(bad, where="e4e.pt")
    with pytest.raises(ValueError, match="latent_avg is torch.int64"):
        from_e4e_state_dict({**state, "latent_avg": torch.zeros(512, dtype=torch.int64)})
