"""HFGI's compensation head (ADA + consultation encoder), its perspective warps and its trainer."""

from __future__ import annotations

import pytest
import torch

from encoders import HFGI, load_encoder
from encoders.hfgi import ConsultationEncoder, DistortionAligner
from experiments.training.warps import perspective_corners, random_perspective
from latentspaces.interfaces import CompensationHead
from conftest import train


def _randomize_heads_(hfgi: HFGI, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (hfgi.consultation.scale, hfgi.consultation.shift):
            head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=gen))
            head[-1].bias.copy_(0.05 * torch.randn(head[-1].bias.shape, generator=gen))


def _inputs(G, n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ws = G.broadcast(G.mapping(torch.randn(n, G.z_dim, generator=gen)))
    return torch.rand(n, 3, G.resolution, G.resolution, generator=gen) * 2 - 1, ws


def test_untrained_hfgi_returns_the_base_reconstruction(small_G):
    torch.manual_seed(0)
    hfgi = HFGI.for_generator(small_G, width=0.25).eval()
    assert isinstance(hfgi, CompensationHead) and hfgi.layers == ("b16.conv0",) and hfgi.input_size == 32
    x, ws = _inputs(small_G)
    with torch.no_grad():
        x0 = small_G.synthesis(ws)
        out = hfgi.compensate(small_G, x, ws)
    c, h, w = small_G.synthesis.feature_shape("b16.conv0")
    assert out.cache["gamma"].shape == out.cache["beta"].shape == (2, c, h, w)
    torch.testing.assert_close(out.cache["dmap"], x - x0.clamp(-1, 1), rtol=0, atol=0)
    torch.testing.assert_close(out.image, x0, rtol=0, atol=0)
    torch.testing.assert_close(out.ws, ws, rtol=0, atol=0)


def test_hfgi_fusion_and_edit_rule(small_G):
    torch.manual_seed(0)
    hfgi = HFGI.for_generator(small_G, width=0.25).eval()
    _randomize_heads_(hfgi)
    x, ws = _inputs(small_G)
    with torch.no_grad():
        out = hfgi.compensate(small_G, x, ws)
        gamma, beta = out.cache["gamma"], out.cache["beta"]
        assert gamma.abs().max() > 0 and (out.image - small_G.synthesis(ws)).abs().max() > 1e-3
        manual = small_G.synthesis.with_edit(ws, hfgi.layer, lambda f: f * (1 + gamma) + beta)
        torch.testing.assert_close(out.image, manual, rtol=0, atol=0)
        # delta 0: the reconstruction exactly; a real edit re-aligns the distortion to the edited image
        torch.testing.assert_close(hfgi.edit(small_G, out, torch.zeros_like(ws)), out.image, rtol=0, atol=0)
        delta = 0.5 * torch.randn_like(ws)
        edited_x0 = small_G.synthesis(ws + delta)
        aligned = hfgi.ada(torch.cat([out.cache["dmap"], edited_x0.clamp(-1, 1)], 1))
        g2, b2 = hfgi.consultation(aligned)
        expected = small_G.synthesis.with_edit(ws + delta, hfgi.layer, lambda f: f * (1 + g2) + b2)
        torch.testing.assert_close(hfgi.edit(small_G, out, delta), expected, rtol=0, atol=0)
        assert not torch.allclose(g2, gamma)   # the modulation follows the edit
    with pytest.raises(ValueError, match=r"ws must be \[N, "):
        hfgi.compensate(small_G, x, ws[:, :2])


def test_hfgi_released_configuration_sizes():
    """The released network at 1024 px (r = 256, fused layer 64 x 64 x 512): ADA as the released ResidualAligner
    (596,801 parameters in 295 tensors, three bottlenecks per decoder level), 5.65 M Ec."""
    ada, ec = DistortionAligner(1.0), ConsultationEncoder(256, 512, 64, 1.0)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ada) == 596_801 and len(ada.state_dict()) == 295 and count(ec) == 5_647_344
    # the decoder levels' (in, out) channels, bottleneck by bottleneck, as the released dconv_layer1..3
    levels = [[(b.res_layer[1].in_channels, b.res_layer[3].out_channels) for b in level] for level in ada.up]
    assert levels == [[(112, 64), (64, 32), (32, 32)], [(64, 32), (32, 16), (16, 16)], [(32, 16), (16, 3), (3, 3)]]
    compact = DistortionAligner(1.0, decoder_units=2)   # the form of the files written before the option
    assert count(compact) == 573_344 and len(compact.state_dict()) == 256
    with pytest.raises(ValueError, match="decoder_units"):
        DistortionAligner(1.0, decoder_units=4)
    ada.eval(), ec.eval()
    with torch.no_grad():
        assert ada(torch.zeros(1, 6, 32, 32)).shape == (1, 3, 32, 32)
        gamma, beta = ec(torch.zeros(1, 3, 64, 64))
    assert gamma.shape == beta.shape == (1, 512, 16, 16)
    with pytest.raises(ValueError, match="at most two stride-2 stages"):
        ConsultationEncoder(256, 512, 32)
    with pytest.raises(ValueError, match="divisible by 8"):
        ada(torch.zeros(1, 6, 12, 12))


def test_hfgi_shrinks_renders_as_released_and_reads_older_files(small_G):
    """The render G(W) shrinks to r by plain bilinear interpolation (the released code's
    F.interpolate(clamp(G(W)), 256, 'bilinear')), the target with antialiasing; 'antialias' filters both, and a
    file written before the option (no 'rendered_resize', 'ada_decoder_units' in its config) loads as that form."""
    import torch.nn.functional as F

    hfgi = HFGI.for_generator(small_G, width=0.25, input_size=16).eval()   # 32 px generator -> 16 px maps
    assert hfgi.config["rendered_resize"] == "bilinear" and hfgi.config["ada_decoder_units"] == 3
    x, ws = _inputs(small_G)
    x0 = small_G.synthesis(ws).detach()
    plain = F.interpolate(x0.clamp(-1, 1), size=(16, 16), mode="bilinear", align_corners=False)
    smooth = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(hfgi.distortion(x, x0), smooth - plain, rtol=0, atol=0)
    old = HFGI.for_generator(small_G, width=0.25, input_size=16, rendered_resize="antialias",
                             ada_decoder_units=2).eval()
    torch.testing.assert_close(old.shrink_render(x0), hfgi.resize(x0.clamp(-1, 1)), rtol=0, atol=0)
    assert (old.shrink_render(x0) - plain).abs().max() > 1e-3
    shipped = load_encoder("default-hfgi")   # trained before the options: its header names neither
    assert (shipped.ada_decoder_units, shipped.rendered_resize) == (2, "antialias")
    with pytest.raises(ValueError, match="rendered_resize must be one of"):
        HFGI.for_generator(small_G, width=0.25, rendered_resize="nearest")


def test_random_perspective_is_seeded_per_sample_and_identity_without_distortion():
    x = torch.randn(4, 5, 16, 16)
    torch.testing.assert_close(random_perspective(x, 0.0, 1.0, torch.Generator().manual_seed(0)), x, rtol=0,
                               atol=1e-5)
    torch.testing.assert_close(random_perspective(x, 0.5, 0.0, torch.Generator().manual_seed(0)), x, rtol=0, atol=0)
    a = random_perspective(x, 0.5, 1.0, torch.Generator().manual_seed(1))
    b = random_perspective(x, 0.5, 1.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - x).abs().amax(dim=(1, 2, 3)).min() > 0.1          # every sample moved
    start, end = perspective_corners(16, 16, 0.5, torch.Generator().manual_seed(2))
    assert start == [[0, 0], [15, 0], [15, 15], [0, 15]]
    assert all(0 <= e <= 4 or 11 <= e <= 15 for corner in end for e in corner)  # inwards by <= 0.5 * 16 / 2
    with pytest.raises(ValueError, match=r"distortion must be in \[0, 1\]"):
        perspective_corners(16, 16, 1.5)


def test_hfgi_trainer_runs_resumes_and_exports(tmp_path):

    out = tmp_path / "hfgi"
    common = ["--out", str(out), "--batch", "2", "--snap", "1", "--device", "cpu", "--width", "0.25",
              "--perceptual", "none", "--identity", "none"]
    train("hfgi", [*common, "--steps", "1", "--lambda-adv", "0.1"])
    train("hfgi", [*common, "--steps", "2", "--lambda-adv", "0.1", "--resume", "--half"])
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[-4:] == ["heldout_mse_base", "heldout_mse", "heldout_ssim", "heldout_identity"] and len(rows) == 3
    hfgi = load_encoder(out / "hfgi.safetensors")
    assert isinstance(hfgi, HFGI) and hfgi.layer == "b32.conv0" and hfgi.input_size == 64
    assert hfgi.meta["steps"] == 2 and hfgi.meta["lambda_adv"] == 0.1


def test_hfgi_trainer_released_form(tmp_path):
    """--consult warped (the released forward: the image is fused from ADA of the warped distortion) trains and
    says so in the export; the default is our unwarped form."""
    from experiments.cli import build_parser
    from experiments.training.train_hfgi import HFGIConfig

    assert HFGIConfig.from_args(build_parser().parse_args(["train", "hfgi", "--out", "x"])).consult == "unwarped"
    out = tmp_path / "hfgi_released"
    train("hfgi", ["--out", str(out), "--batch", "2", "--snap", "1", "--device", "cpu", "--width", "0.25",
                     "--perceptual", "none", "--identity", "none", "--steps", "1", "--consult", "warped", "--warp-p", "1"])
    assert load_encoder(out / "hfgi.safetensors").meta["consult"] == "warped"
