"""The default domain: DCGAN face sampler, the discriminator, its features distance, the trainer."""

from __future__ import annotations

import json

import pytest
import torch

import latentspaces as ls
from latentspaces.datasets import HELDOUT_BASE, FaceSampler, dcgan_weights_path
from latentspaces.discriminator import Discriminator
from latentspaces.metrics.d_features import DiscriminatorFeatures


@pytest.fixture(scope="module")
def sampler():
    return FaceSampler("cpu")


def test_sampler_is_deterministic_and_in_range(sampler):
    a, b = sampler.sample(4, seed=3), sampler.sample(4, seed=3)
    assert a.shape == (4, 3, 64, 64) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.2
    assert not torch.equal(a, sampler.sample(4, seed=4))


def test_heldout_images_are_per_seed_and_not_the_training_stream(sampler):
    h = sampler.heldout(3)
    # Equal up to float rounding: a convolution over a batch of 3 may sum in another order than over 1
    # (seen on AMD EPYC: 2e-7 apart), while another seed's image would be ~1 apart.
    assert torch.allclose(sampler.heldout(1, start=2), h[2:3], rtol=0, atol=1e-5)
    z2 = torch.randn(100, generator=torch.Generator().manual_seed(HELDOUT_BASE + 2))
    assert torch.allclose(sampler.from_z(z2[None]), h[2:3], rtol=0, atol=1e-5)
    train = next(sampler.stream(8, seed=0))
    assert min((train[:, None] - h[None]).abs().flatten(2).amax(2).min().item(), 1.0) > 1e-3


def test_missing_wheel_error_names_the_file(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="weights.tar.*pip install --no-deps gan-face-generate"):
        dcgan_weights_path()


def test_shipped_heldout_targets_match_the_sampler(sampler):
    from latentspaces.assets import heldout_targets

    x = heldout_targets()
    assert x.shape == (64, 3, 64, 64)
    assert (x[:4] - sampler.heldout(4)).abs().max() <= 1 / 127.5 + 1e-6  # uint8 quantisation only


def test_discriminator_shapes_and_input_gradient():
    D = Discriminator(32, {32: 16, 16: 16, 8: 32, 4: 32})
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    out = D(x)
    assert out.shape == (4, 1)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert g.abs().sum() > 0
    assert [tuple(f.shape) for f in D.features(x)] == [(4, 16, 16, 16), (4, 32, 8, 8), (4, 32, 4, 4)]
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        D(torch.randn(1, 3, 16, 16))


def test_d_features_distance_grows_with_blur_and_noise(sampler):
    from latentspaces.discriminator import load_default_discriminator

    d = DiscriminatorFeatures(load_default_discriminator())
    x = sampler.heldout(8)
    assert torch.allclose(d(x, x), torch.zeros(8), atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    noise = [d(x, (x + s * torch.randn(x.shape, generator=gen)).clamp(-1, 1)).mean() for s in (0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(noise, noise[1:]))
    import torch.nn.functional as F

    def blur(img, k):
        return F.avg_pool2d(F.pad(img, [k // 2] * 4, mode="replicate"), k, stride=1)

    blurs = [d(x, blur(x, k)).mean() for k in (3, 5, 7)]
    assert all(a < b for a, b in zip(blurs, blurs[1:]))


def test_default_generator_loads_offline_and_has_the_promised_size():
    from torch.utils.flop_counter import FlopCounterMode

    G = ls.load_generator("default")
    assert (G.resolution, G.z_dim, G.w_dim, G.num_ws, G.mapping.num_layers) == (64, 512, 512, 10, 8)
    ws = G.broadcast(G.mapping(torch.randn(1, 512)))
    with FlopCounterMode(display=False) as fc:
        G.synthesis(ws)
    assert fc.get_total_flops() <= 0.6e9


def test_trainer_smoke_and_exact_resume(tmp_path):
    from conftest import train

    common = ["--kimg", "0.032", "--batch", "4", "--resolution", "16", "--device", "cpu", "--snap", "0.016",
              "--g-channels", json.dumps({4: 16, 8: 16, 16: 8}), "--d-channels", json.dumps({16: 8, 8: 16, 4: 16}),
              "--z-dim", "32", "--mapping-layers", "2", "--w-avg-samples", "2000"]
    full = tmp_path / "full"
    train("stylegan2", ["--out", str(full)] + common)
    part = tmp_path / "part"
    # A run stopped half way (kimg 0.016), then resumed to the full length.
    train("stylegan2", ["--out", str(part), "--kimg", "0.016"] + common[2:])
    train("stylegan2", ["--out", str(part), "--resume"] + common)
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert int(a["nimg"]) == int(b["nimg"]) == 32
    for k in a["G_ema"]:
        assert torch.allclose(a["G_ema"][k], b["G_ema"][k], atol=1e-6), k
    G = ls.load_generator(full / "generator.safetensors")
    assert G.resolution == 16 and (full / "discriminator.safetensors").is_file()
    assert len(list(full.glob("samples_*.png"))) >= 1 and (full / "log.csv").read_text().count("\n") >= 2


def test_d_features_caches_target_units_and_runs_only_the_blocks_it_sums():
    from latentspaces.assets import heldout_targets
    from latentspaces.discriminator import load_default_discriminator
    from latentspaces.metrics.d_features import _unit

    D = load_default_discriminator()
    x, y = heldout_targets(4)[:2], heldout_targets(4)[2:].clone()
    assert all(torch.equal(a, b) for a, b in zip(D.features(x, 2), D.features(x)[:2]))
    d = DiscriminatorFeatures(D, blocks=[1, 0])
    assert d.depth == 2 and d.blocks == [0, 1]
    fx, fy = D.features(x), D.features(y)
    manual = sum((_unit(fx[i]) - _unit(fy[i])).square().sum(1).mean(dim=[1, 2]) for i in (0, 1))
    torch.testing.assert_close(d(x, y), manual)
    torch.testing.assert_close(d(x, y), manual)               # second call: from the cache
    y.mul_(0.5)                                               # the same tensor changed in place: recomputed
    fy = D.features(y)
    manual = sum((_unit(fx[i]) - _unit(fy[i])).square().sum(1).mean(dim=[1, 2]) for i in (0, 1))
    torch.testing.assert_close(d(x, y), manual)
    with pytest.raises(ValueError, match="blocks must be indices"):
        DiscriminatorFeatures(D, blocks=[len(D.block_names)])
