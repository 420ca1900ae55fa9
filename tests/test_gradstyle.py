"""GradStyle head: exact base reconstruction when untrained, exact edit at delta 0, selective-attention
masking, the W+ encoder's pyramid, the file round trip, the trainer's edit-consistency loss."""

from __future__ import annotations

import math

import pytest
import torch

import latentspaces as ls
from encoders import GradStyle, load_encoder, save_encoder
from encoders.gradstyle import position_encoding_2d, selective_attention
from experiments.training.editing import direction_deltas, random_edits
from experiments.training.train_gradstyle import edit_consistency_loss
from experiments.training.warps import perspective_warp, random_homographies
from latentspaces.directions import ganspace


@pytest.fixture(scope="module")
def G():
    return ls.load_generator("default").eval().requires_grad_(False)


@pytest.fixture(scope="module")
def base():
    return load_encoder("default-wplus").requires_grad_(False)


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _perturbed(head: GradStyle, scale: float = 0.05) -> GradStyle:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return head


def test_layers_and_shapes(G, base, x):
    head = GradStyle.for_generator(G, base)
    assert head.layers == ("b8.conv1", "b16.conv1", "b32.conv1")
    assert sum(p.numel() for p in head.parameters()) <= 370_000          # the asset budget (0.75 MB in fp16)
    with torch.no_grad():
        ws = base(x)
        comp = head.compensate(G, x, ws)
    assert comp.image.shape == (2, 3, 64, 64) and comp.ws is ws
    for layer in head.layers:
        c, h, w = G.synthesis.feature_shape(layer)
        assert comp.cache[f"residual.{layer}"].shape == (2, c, h, w)
        assert comp.cache[f"feature.{layer}"].shape == (2, c, h, w)
    assert [comp.cache[f"pyramid.{m}"].shape[-1] for m in range(3)] == [8, 16, 32]


def test_untrained_head_returns_base_reconstruction_exactly(G, base, x):
    head = GradStyle.for_generator(G, base).eval()
    with torch.no_grad():
        ws = base(x)
        x0 = G.synthesis(ws, noise_mode="const")
        comp = head.compensate(G, x, ws, x0)
        assert torch.equal(comp.image, x0)
        delta = 0.3 * torch.randn_like(ws)
        assert torch.equal(head.edit(G, comp, delta), G.synthesis(ws + delta, noise_mode="const"))


def test_edit_at_zero_is_the_reconstruction_exactly(G, base, x):
    head = _perturbed(GradStyle.for_generator(G, base)).eval()
    with torch.no_grad():
        ws = base(x)
        comp = head.compensate(G, x, ws)
        assert (comp.image - G.synthesis(ws)).abs().max() > 1e-3        # the head does something
        assert torch.equal(head.edit(G, comp, torch.zeros_like(ws)), comp.image)
        assert (head.edit(G, comp, 0.3 * torch.randn_like(ws)) - comp.image).abs().max() > 1e-3


def test_unbound_head_says_what_to_do(G, base, x):
    head = GradStyle(**GradStyle.for_generator(G, base).config)
    with pytest.raises(RuntimeError, match="bind"):
        head.compensate(G, x, base(x).detach())
    with torch.no_grad():  # the pyramid passed in works without binding
        ws, pyramid = base.forward_with_pyramid(x)
        assert head.compensate(G, x, ws, pyramid=pyramid).image.shape == (2, 3, 64, 64)


def test_selective_attention_masks_with_zero_weight():
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=gen) for _ in range(3))
    out, w = selective_attention(q, k, v, keep=0.25)                     # ceil(0.25 * 5) = 2 keys per query
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    kept = scores >= scores.topk(2, dim=-1).values[..., -1:]
    assert torch.all(w[~kept] == 0) and torch.all(w[kept] > 0)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 5))
    ref = torch.where(kept, scores, torch.tensor(-math.inf)).softmax(-1)
    assert torch.allclose(w, ref) and torch.allclose(out, ref @ v)
    full, wf = selective_attention(q, k, v, keep=1.0)
    assert torch.allclose(wf, scores.softmax(-1)) and torch.allclose(full, wf @ v)
    with pytest.raises(ValueError, match="keep"):
        selective_attention(q, k, v, keep=0.0)


def test_position_encoding_shape_and_range():
    pe = position_encoding_2d(32, 4, 6)
    assert pe.shape == (32, 4, 6) and pe.abs().max() <= 1
    assert not torch.equal(pe[:, 0, 0], pe[:, 1, 0]) and not torch.equal(pe[:, 0, 0], pe[:, 0, 1])


def test_pyramid_leaves_forward_unchanged(base, x):
    """forward equals e4e's lazy pyramid-then-styles computation (the code before `pyramid`) bit for bit."""
    import torch.nn.functional as F

    def reference(enc, x):
        c1, c2, c3 = enc.features(x)
        w0 = enc.styles[0](c3)
        ws, p2, p1 = [w0], None, None
        for i in range(1, enc.num_ws):
            if i > enc.progressive_stage:
                ws.append(w0)
                continue
            if i == enc.coarse_ind or (i > enc.coarse_ind and p2 is None):
                p2 = F.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=True) + enc.latlayer1(c2)
            if i == enc.middle_ind or (i > enc.middle_ind and p1 is None):
                p1 = F.interpolate(p2, size=c1.shape[-2:], mode="bilinear", align_corners=True) + enc.latlayer2(c1)
            src = c3 if i < enc.coarse_ind else p2 if i < enc.middle_ind else p1
            ws.append(w0 + enc.styles[i](src))
        return torch.stack(ws, dim=1) + enc.w_avg

    with torch.no_grad():
        assert torch.equal(base(x), reference(base, x))
        ws, maps = base.forward_with_pyramid(x)
        assert torch.equal(ws, base(x))
        assert [tuple(m.shape) for m in maps] == [(2, 128, 8, 8), (2, 128, 16, 16), (2, 128, 32, 32)]
        assert all(torch.equal(a, b) for a, b in zip(maps, base.pyramid(x)))


def test_perspective_warp_identity_and_shape():
    r = torch.randn(2, 4, 8, 8)
    assert torch.allclose(perspective_warp(r, torch.eye(3).repeat(2, 1, 1)), r, atol=1e-5)
    h = random_homographies(2, 0.1, torch.Generator().manual_seed(3))
    assert h.shape == (2, 3, 3) and perspective_warp(r, h).shape == r.shape


def test_save_load_round_trip(G, base, x, tmp_path):
    head = _perturbed(GradStyle.for_generator(G, base)).eval()
    save_encoder(head, tmp_path / "gs.safetensors", meta={"steps": 0})
    loaded = load_encoder(tmp_path / "gs.safetensors").bind(base)
    assert isinstance(loaded, GradStyle) and loaded.config == head.config and loaded.meta == {"steps": 0}
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), loaded.state_dict().values()))
    with torch.no_grad():
        ws = base(x)
        assert torch.equal(loaded.compensate(G, x, ws).image, head.compensate(G, x, ws).image)


def _consistency(head, G, base, x):
    """The trainer's edit-consistency loss for x under two random GANSpace edits (the trainer's editor)."""
    dirs = ganspace(G, n_samples=2000, n_components=5, kind="w", seed=0, scale_by_std=True)
    delta = random_edits(direction_deltas(G, dirs), x.shape[0], 3, 3.0, torch.Generator().manual_seed(4))
    with torch.no_grad():
        ws, pyramid = base.forward_with_pyramid(x)
        image, cache = head.reconstruct(G, ws, head.check_pyramid(pyramid))
        return edit_consistency_loss(head, G, ws, image, [cache[f"residual.{n}"] for n in head.layers],
                                     [cache[f"feature.{n}"] for n in head.layers], delta)


def test_edit_consistency_zero_untrained_positive_perturbed(G, base, x):
    head = GradStyle.for_generator(G, base).eval()
    assert _consistency(head, G, base, x).item() == 0.0              # its edits are the base's exactly
    with torch.no_grad():                                             # a residual output layer made non-zero
        head.grm[1].out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(5))
    assert _consistency(head, G, base, x).item() > 1e-4


def test_gradstyle_trainer_runs_resumes_and_exports(tmp_path):
    from encoders import load_encoder
    from conftest import train

    out = tmp_path / "gs"
    common = ["--out", str(out), "--batch", "2", "--edit-batch", "1", "--snap", "1", "--device", "cpu",
              "--perceptual", "none", "--lambda-adv", "0.1", "--ganspace-samples", "2000", "--identity", "none"]
    train("gradstyle", [*common, "--steps", "1"])
    train("gradstyle", [*common, "--steps", "2", "--resume", "--half"])
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].split(",")[-5:] == ["loss_D", "heldout_mse_base", "heldout_mse", "heldout_ssim",
                                                           "heldout_identity"]
    assert all(v != "nan" for v in rows[2].split(",")[:-1])   # a discriminator step every step (identity: off)
    head = load_encoder(out / "gradstyle.safetensors")
    assert isinstance(head, GradStyle) and head.meta["steps"] == 2
    assert head.meta["adversarial"]["weight"] == 0.1 and head.meta["edit_consistency"]["weight"] == 1.0


def test_pyramid_resize_after_w_t_equals_resizing_the_pyramid_first():
    """W_T is a 1x1 conv, which commutes with bilinear resizing: the fast order (resize W_T t) equals the
    obvious one (resize t, then W_T) to float64 rounding."""
    import torch.nn.functional as F

    from encoders.gradstyle import GradualResidual

    torch.manual_seed(0)
    grm = GradualResidual(pyramid_channels=6, channels=5, hidden=7, gate_rank=0).double()
    torch.nn.init.normal_(grm.out.weight)
    t, f = torch.randn(2, 6, 8, 8, dtype=torch.float64), torch.randn(2, 5, 32, 32, dtype=torch.float64)
    reference = grm.out(grm.body(grm.w_t(F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False))
                                 + grm.w_f(f)))
    torch.testing.assert_close(grm.residual(t, f), reference, rtol=0, atol=1e-12)


def test_alignment_block_pools_only_above_its_token_side():
    from encoders.gradstyle import AlignmentBlock

    torch.manual_seed(0)
    full, pooled = AlignmentBlock(8, 2, 4, 0.5, side=16), AlignmentBlock(8, 2, 4, 0.5, side=4)
    pooled.load_state_dict(full.state_dict())
    torch.nn.init.normal_(full.o.weight)
    pooled.o.weight.data.copy_(full.o.weight)
    f, r = torch.randn(1, 8, 16, 16), torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        a, b = full(f, r), pooled(f, r)
        assert a.shape == b.shape == r.shape and not torch.allclose(a, b)      # 16 x 16 > 4: pooled grid
        # at or below the side nothing is pooled: the same numbers as full attention on those tokens
        torch.testing.assert_close(pooled(f[..., :4, :4], r[..., :4, :4]), full(f[..., :4, :4], r[..., :4, :4]))
