"""SDIC's compensation head, PTI-style tuning, and the trainers of the encoders and heads."""

from __future__ import annotations

import copy

import pytest
import torch

import latentspaces as ls
from encoders import SDIC, WPlusEncoder, load_encoder
from latentspaces.interfaces import CompensationHead
from optimizers import PTI
from optimizers.pti import pivot_lr


def _randomize_last_layers_(sdic: SDIC, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (sdic.dicn.feat[-1], sdic.dicn.lat1d[-1]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.05)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.05)


@pytest.mark.parametrize("fusion", ["base", "compensated"])
def test_untrained_sdic_returns_the_base_reconstruction(small_G, fusion):
    torch.manual_seed(0)
    sdic = SDIC.for_generator(small_G, width=0.25, fusion=fusion).eval()
    assert sdic.layer == "b16.conv0"
    ws = small_G.broadcast(small_G.mapping(torch.randn(2, small_G.z_dim)))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        x0 = small_G.synthesis(ws)
        out = sdic.compensate(small_G, x, ws)
    assert isinstance(sdic, CompensationHead) and sdic.layers == ("b16.conv0",)
    assert out.cache["dmap"].shape == (2, 3, 32, 32)
    assert out.cache["g_l"].shape == (2, *small_G.synthesis.feature_shape("b16.conv0"))
    torch.testing.assert_close(out.image, x0, rtol=0, atol=0)
    torch.testing.assert_close(out.ws, ws, rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ["base", "compensated"])
def test_sdic_compensate_and_edit_rule(small_G, fusion):
    torch.manual_seed(0)
    sdic = SDIC.for_generator(small_G, width=0.25, fusion=fusion).eval()
    _randomize_last_layers_(sdic)
    ws = small_G.broadcast(small_G.mapping(torch.randn(2, small_G.z_dim)))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = sdic.compensate(small_G, x, ws)
        assert (out.image - small_G.synthesis(ws)).abs().max() > 1e-3  # the head changes the image
        assert (out.ws - ws).abs().max() > 1e-4                          # and the codes: W' = W (1 + A) + B
        fused_codes = ws if fusion == "base" else out.ws                # released: G_l of the base codes W
        torch.testing.assert_close(out.cache["g_l"], small_G.synthesis.features(fused_codes, sdic.layer))
        if fusion == "compensated":  # alpha = 0 gives the compensated image back exactly
            torch.testing.assert_close(sdic.edit(small_G, out, torch.zeros_like(ws)), out.image, rtol=0, atol=0)
        else:                        # released: off by G_l(W') - G_l(W) at alpha = 0
            assert (sdic.edit(small_G, out, torch.zeros_like(ws)) - out.image).abs().max() > 1e-4
        # an edit adds the stored residual F^ - G_l to G_l(W' + delta), with the RGB skip kept
        delta = torch.randn_like(ws) * 0.3
        edited = sdic.edit(small_G, out, delta)
        g_l = small_G.synthesis.features(out.ws + delta, sdic.layer)
        manual = small_G.synthesis.with_edit(out.ws + delta, sdic.layer, lambda g: g_l + out.cache["residual"])
        torch.testing.assert_close(edited, manual)
        torch.testing.assert_close(out.cache["f_hat"], out.cache["g_l"] + out.cache["residual"])


def test_sdic_files_written_before_the_fusion_field_read_as_compensated(small_G, tmp_path, monkeypatch):
    from encoders import save_encoder

    sdic = SDIC.for_generator(small_G, width=0.25, fusion="compensated")
    old_config = {k: v for k, v in sdic.config.items() if k != "fusion"}
    monkeypatch.setattr(SDIC, "config", property(lambda self: old_config))   # the config an older version wrote
    save_encoder(sdic, tmp_path / "old.safetensors")
    monkeypatch.undo()
    assert load_encoder(tmp_path / "old.safetensors").fusion == "compensated"
    save_encoder(SDIC.for_generator(small_G, width=0.25), tmp_path / "new.safetensors")
    assert load_encoder(tmp_path / "new.safetensors").fusion == "base"
    with pytest.raises(ValueError, match="fusion must be one of"):
        SDIC.for_generator(small_G, width=0.25, fusion="G7")


def test_pti_schedule():
    lrs = [pivot_lr(s, 100, 0.01) for s in range(100)]
    assert lrs[0] == 0 and max(lrs) == pytest.approx(0.01)
    assert lrs[4] < 0.01 and lrs[50] == pytest.approx(0.01)   # 5% warm-up, flat middle
    assert lrs[99] < 0.001                                     # cosine ramp-down to ~0


def test_pti_tunes_a_copy_and_improves_on_the_pivot(small_G):
    before = copy.deepcopy(small_G.state_dict())
    targets = small_G(torch.randn(2, small_G.z_dim), truncation_psi=1.0).detach()
    targets = (targets + 0.1 * torch.randn_like(targets)).clamp(-1, 1)   # not exactly in G's range
    res = PTI(small_G, pivot_steps=30, tune_steps=30, tune_lr=3e-3, progress=False).run(targets)
    for k, v in small_G.state_dict().items():      # the original generator is untouched
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    pivot_mse = (res.pivot_images - targets).square().flatten(1).mean(1)
    tuned_mse = (res.images - targets).square().flatten(1).mean(1)
    assert (tuned_mse < pivot_mse).all()
    assert res.pivots.shape == (2, small_G.w_dim) and res.tune_steps_run == [30, 30]
    # any space can use the tuned generator
    assert ls.FZPlus(res.generator).synthesize(ls.FZPlus(res.generator).mean(1)).shape == (1, 3, 32, 32)
    single = PTI(small_G, pivot_steps=30, tune_steps=5, tune_lr=3e-3, per_image=True, progress=False).run(targets)
    assert isinstance(single.generator, list) and len(single.generator) == 2
    torch.testing.assert_close(single.pivots, res.pivots)   # pivots do not depend on the batch
    with pytest.raises(ValueError, match="targets must be"):
        PTI(small_G).run(torch.zeros(1, 3, 16, 16))


def test_pti_early_stop_on_threshold(small_G):
    targets = small_G(torch.randn(1, small_G.z_dim)).detach().clamp(-1, 1)
    res = PTI(small_G, pivot_steps=5, tune_steps=50, perceptual=lambda x, y: (x - y).abs().flatten(1).mean(1),
              stop_threshold=10.0, progress=False).run(targets)
    assert res.tune_steps_run == [0]


@pytest.mark.slow
def test_trainers_run_resume_and_export(tmp_path):
    """F encoder, W+ encoder and SDIC trainers: a few steps on the default model, killed and resumed."""
    from conftest import train

    f_out, w_out, s_out = tmp_path / "f", tmp_path / "w", tmp_path / "s"
    common = ["--batch", "2", "--snap", "1", "--device", "cpu", "--identity", "none"]
    train("f-encoder", ["--out", str(f_out), "--steps", "2", "--widths", "[8, 8, 8]", "--perceptual", "none", *common])
    train("f-encoder", ["--out", str(f_out), "--steps", "3", "--widths", "[8, 8, 8]", "--perceptual", "none",
                          "--resume", *common])
    assert [line.split(",")[0] for line in (f_out / "log.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
    f_enc = load_encoder(f_out / "encoder.safetensors")
    assert f_enc.meta["steps"] == 3 and f_enc.layer == "b8.conv0"
    train("wplus-encoder", ["--out", str(w_out), "--steps", "2", "--style-channels", "8", "--progressive-start", "1",
                              "--progressive-every", "1", "--lambda-wd", "0.1", "--perceptual", "d-features", *common])
    w_enc = load_encoder(w_out / "encoder.safetensors")
    assert isinstance(w_enc, WPlusEncoder) and w_enc.progressive_stage == 1
    train("sdic", ["--out", str(s_out), "--steps", "2", "--width", "0.25", "--base-encoder",
                     str(w_out / "encoder.safetensors"), "--perceptual", "none", "--half", *common])
    sdic = load_encoder(s_out / "sdic.safetensors")
    assert isinstance(sdic, SDIC) and sdic.layer == "b32.conv0" and sdic.input_size == 32
    assert (s_out / "loss.png").is_file() and (s_out / "reconstructions.png").is_file()


def test_sdic_paper_configuration_shapes():
    """The paper's sizes (1024 px generator, 256 px input, 512 x 64 x 64 layer b64.conv0), heads only."""
    sdic = SDIC(num_ws=18, w_dim=512, layer="b64.conv0", layer_channels=512, layer_resolution=64, input_size=256)
    sdic.eval()
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        dmap = sdic.dipn(x, x.flip(-1))
        a, b, feat2 = sdic.dicn(dmap)
    assert dmap.shape == (1, 3, 256, 256)
    assert a.shape == b.shape == (1, 18, 512) and feat2.shape == (1, 512, 64, 64)
    with pytest.raises(ValueError, match="power-of-two multiple"):
        SDIC(num_ws=18, w_dim=512, layer="b64.conv0", layer_channels=512, layer_resolution=64, input_size=96)


def test_edit_strength_is_each_targets_edit_change_over_the_base_encoders(tmp_path):
    from experiments.runs import append_rows
    from experiments.studies.compensation import FIELDS, summarize

    changes = {"base": [0.10, 0.20, 0.40], "hfgi": [0.05, 0.20, 0.60]}
    rows = [{"method": m, "target": i, **{k: "0.5" for k in FIELDS[2:-1]}, "edit_change": f"{c:g}",
             "images_sha256": "x"} for m, cs in changes.items() for i, c in enumerate(cs)]
    append_rows(tmp_path / "compensation_per_image.csv", rows, FIELDS)
    summary = {r["method"]: r for r in summarize(tmp_path, ["base", "hfgi"])}
    assert summary["base"]["edit_strength"] == pytest.approx(1.0)
    assert summary["hfgi"]["edit_strength"] == pytest.approx((0.5 + 1.0 + 1.5) / 3)   # per-target ratios, averaged
    assert summary["hfgi"]["edit_strength_std"] == pytest.approx(0.5)
    assert "edit strength" in (tmp_path / "compensation_comparison.md").read_text().splitlines()[0]


def test_a_head_named_by_methods_must_exist(monkeypatch, tmp_path, capsys):
    from experiments.cli import main
    from latentspaces import assets

    real = assets.installed
    monkeypatch.setattr(assets, "installed", lambda name: name != "default-gradstyle" and real(name))
    with pytest.raises(SystemExit) as e:
        main(["compensation", "--quick", "--out", str(tmp_path / "out"), "--methods", "base,gradstyle"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--methods names gradstyle, but default-gradstyle is not installed" in err
    assert "latentspaces train gradstyle" in err and not (tmp_path / "out").exists()
