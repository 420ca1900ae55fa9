"""ReGANIE's rectifying network as a compensation head, and the GAN loss pieces it shares with the StyleGAN2
trainer ("ReGANIE: Rectifying GAN Inversion Errors for Accurate Real Image Editing")."""

from __future__ import annotations

import math

import pytest
import torch

from encoders import ReGANIE, load_encoder, read_encoder_meta, save_encoder
from latentspaces.losses import discriminator_loss, generator_loss, lazy_r1_term, r1_penalty
from experiments.training.editing import random_edits
from latentspaces.interfaces import CompensationHead

SMALL = dict(channels={32: 8, 16: 12, 8: 16}, sp_channels=4, gl_dim=8)


def _head(G, output: str) -> ReGANIE:
    torch.manual_seed(3)
    return ReGANIE.for_generator(G, output=output, **SMALL).eval()


def _batch(G, n: int = 2):
    torch.manual_seed(4)
    ws = G.broadcast(G.mapping(torch.randn(n, G.z_dim)))
    x = (G.synthesis(ws, noise_mode="const") + 0.2 * torch.randn(n, 3, G.resolution, G.resolution)).clamp(-1, 1)
    return x, ws


def test_residual_mode_untrained_is_the_identity_on_the_rendered_image(small_G):
    head = _head(small_G, "residual")
    assert isinstance(head, CompensationHead) and head.layers == ()
    x, ws = _batch(small_G)
    with torch.no_grad():
        comp = head.compensate(small_G, x, ws)
        x0 = small_G.synthesis(ws, noise_mode="const")
        assert torch.equal(comp.image, x0) and torch.equal(comp.ws, ws)
        delta = 0.3 * torch.randn_like(ws)
        assert torch.equal(head.edit(small_G, comp, delta), small_G.synthesis(ws + delta, noise_mode="const"))


def test_direct_mode_edit_at_delta_zero_returns_the_reconstruction(small_G):
    head = _head(small_G, "direct")
    x, ws = _batch(small_G)
    with torch.no_grad():
        comp = head.compensate(small_G, x, ws)
        assert not torch.allclose(comp.image, comp.cache["rendered"])  # direct: G_p's own image
        assert torch.equal(head.edit(small_G, comp, torch.zeros_like(ws)), comp.image)
        # the residual codes are cached: an edit uses them, not a new residual
        moved = head.edit(small_G, comp, 0.5 * torch.randn_like(ws))
        assert moved.shape == x.shape and not torch.equal(moved, comp.image)
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        head.compensate(small_G, x[:, :, :16, :16], ws)


def test_modulation_and_code_shapes(small_G):
    head = _head(small_G, "direct")
    assert head.config["downsamplings"] == 2 and head.g_p.resolutions == [8, 16, 32]
    x, ws = _batch(small_G, n=3)
    codes = head.residual_codes(x)
    assert codes["sp"].shape == (3, 4, 8, 8) and codes["gl"].shape == (3, 8)
    f = head.e_p(x)
    assert f.shape == (3, 16, 8, 8)
    s_layer, g_layer = head.g_p.spatial[1], head.g_p.glob[1]       # the 16 px pair
    f16 = torch.randn(3, 16, 16, 16)
    assert s_layer.modulation(f16, codes["sp"]).shape == (3, 16, 16, 16)   # per pixel and channel (Eq. 7)
    assert g_layer.modulation(codes["gl"]).shape == (3, 12, 1, 1)          # per channel (Eq. 8)
    assert s_layer(f16, codes["sp"]).shape == (3, 12, 16, 16)
    with pytest.raises(ValueError, match="missing"):
        ReGANIE(small_G.num_ws, small_G.w_dim, 32, channels={32: 8, 16: 8})
    with pytest.raises(ValueError, match="output"):
        ReGANIE(small_G.num_ws, small_G.w_dim, 32, output="sum")


def test_gan_losses_match_a_hand_computation():
    fake, real = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.5, 0.0])
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731  softplus
    assert generator_loss(fake).item() == pytest.approx((sp(-0.5) + sp(1.0) + sp(-2.0)) / 3, rel=1e-6)
    assert discriminator_loss(fake, real).item() == pytest.approx(
        (sp(0.5) + sp(-1.0) + sp(2.0)) / 3 + (sp(-1.5) + sp(0.0)) / 2, rel=1e-6)
    # R1 of D(x) = sum(a * x^2) per sample: grad 2 a x, penalty mean over the batch of sum (2 a x)^2
    a = torch.tensor(0.7, requires_grad=True)
    x = torch.randn(2, 3, 4, 4)
    r1 = r1_penalty(lambda t: (a * t.square()).sum(dim=[1, 2, 3]), x)
    expected = (2 * 0.7 * x).square().sum(dim=[1, 2, 3]).mean()
    torch.testing.assert_close(r1, expected)
    (g,) = torch.autograd.grad(r1, a)                     # the graph is kept for D's update
    torch.testing.assert_close(g, 2 * expected / 0.7)
    assert lazy_r1_term(torch.tensor(2.0), gamma=0.5, interval=16).item() == 2.0 * 0.25 * 16


def test_random_edits_sum_one_to_three_directions():
    deltas = torch.eye(5)[:, None, :].expand(5, 2, 5)               # [K=5, L=2, D=5]
    gen = torch.Generator().manual_seed(0)
    moves = random_edits(deltas, 200, 3, 2.0, gen)
    used = (moves[:, 0] != 0).sum(1)
    assert moves.shape == (200, 2, 5) and used.min() >= 1 and used.max() == 3
    assert moves.abs().max() <= 2.0 and torch.equal(moves[:, 0], moves[:, 1])


def test_save_load_round_trip(tmp_path, small_G):
    head = _head(small_G, "residual")
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.05)
    path = tmp_path / "reganie.safetensors"
    save_encoder(head, path, meta={"steps": 3})
    meta = read_encoder_meta(path)
    assert meta["class"] == "ReGANIE" and meta["config"]["output"] == "residual"
    loaded = load_encoder(path)
    assert isinstance(loaded, ReGANIE) and loaded.config == head.config
    x, ws = _batch(small_G)
    with torch.no_grad():
        torch.testing.assert_close(loaded.compensate(small_G, x, ws).image, head.compensate(small_G, x, ws).image)


def test_trainer_runs_logs_and_exports(tmp_path):
    from conftest import train

    out = tmp_path / "run"
    train("reganie", ["--out", str(out), "--steps", "2", "--snap", "1", "--batch", "2", "--device", "cpu",
                        "--perceptual", "none", "--identity", "none", "--ganspace-samples", "600", "--ganspace-components", "4",
                        "--channels", '{"64": 4, "32": 4, "16": 4}', "--sp-channels", "2", "--gl-dim", "4",
                        "--output", "residual", "--half"])
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[-4:] == ["heldout_mse_base", "heldout_mse", "heldout_ssim", "heldout_identity"] and len(rows) == 3
    assert (out / "loss.png").is_file()
    head = load_encoder(out / "reganie.safetensors")
    assert isinstance(head, ReGANIE) and head.meta["output"] == "residual" and head.meta["steps"] == 2
