"""HybridInverter: per-image independence, projection, resume, divergence, errors, history."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import latentspaces as ls
from optimizers import HybridInverter, InversionDiverged


@pytest.fixture(scope="module")
def G():
    from conftest import randomize_

    torch.manual_seed(1)
    G = ls.Generator(z_dim=32, w_dim=32, resolution=16, mapping_layers=2, channels={4: 32, 8: 16, 16: 8})
    return randomize_(G).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def targets(G):
    with torch.no_grad():
        x = G(torch.randn(4, 32, generator=torch.Generator().manual_seed(7)))
    return x.clamp(-1, 1)


def test_on_step_sees_every_step_and_can_stop_the_inversion(G, targets, tmp_path):
    space = ls.WPlus(G)
    seen = []
    res = HybridInverter(space, steps=6, lr=0.05, lambda_per=0, progress=False).invert(
        targets, on_step=lambda done, terms: seen.append((done, terms["loss"].clone())))
    assert [d for d, _ in seen] == list(range(1, 7))
    assert torch.equal(torch.stack([t for _, t in seen]), res.history["loss"])   # the same numbers as the history

    class Stop(Exception):
        pass

    def stop_at_4(done, terms):
        if done == 4:
            raise Stop
    checkpoint = str(tmp_path / "stopped.pt")
    with pytest.raises(Stop):
        HybridInverter(space, steps=6, lr=0.05, lambda_per=0, progress=False).invert(
            targets, on_step=stop_at_4, checkpoint=checkpoint, checkpoint_every=2)
    assert torch.load(checkpoint, weights_only=True)["step"] == 4   # the step's checkpoint is written first


@pytest.mark.parametrize("name", ["ZPlus", "WPlus", "FZPlus", "FWPlus", "Z"])
def test_batch_equals_single_image_runs(G, targets, name):
    # In float64: in float32, Adam grows the rounding of convolution kernels chosen per batch size into
    # differences of 1e-3 after 25 steps (Z), which would hide small cross-talk; in float64 they are 1e-15.
    G64 = copy.deepcopy(G).double()
    targets = targets.double()
    inv = HybridInverter(ls.SPACES[name](G64), steps=25, lr=0.05, lambda_per=0.0, progress=False)
    batch = inv.invert(targets, seed=3, init="random")
    for i in range(len(targets)):
        single = inv.invert(targets[i : i + 1], seed=3, init="random")
        assert (single.images - batch.images[i : i + 1]).abs().max() <= 1e-10
    assert batch.history["mse"].shape == (25, 4)
    assert (batch.history["mse"][-1] < batch.history["mse"][0]).all()


@pytest.mark.parametrize("name", ["Z", "ZPlus", "FZ", "FZPlus"])
def test_z_codes_stay_on_sphere_throughout(G, targets, name):
    space = ls.SPACES[name](G)
    radius = math.sqrt(G.z_dim)
    norms = []
    orig = space.project_

    def spy(code):
        out = orig(code)
        norms.append(((code.z.norm(dim=-1) - radius).abs() / radius).max().item())
        return out

    space.project_ = spy
    HybridInverter(space, steps=10, lr=0.1, lambda_per=0.0, progress=False).invert(targets[:2])
    assert len(norms) == 11 and max(norms) <= 1e-4


def test_f_regularizer_pulls_towards_initial_feature(G, targets):
    space = ls.FWPlus(G)
    init = space.mean(2)
    free = HybridInverter(space, steps=20, lr=0.1, lambda_per=0, lambda_reg=0, progress=False).invert(targets[:2], init=init)
    held = HybridInverter(space, steps=20, lr=0.1, lambda_per=0, lambda_reg=1e4, progress=False).invert(targets[:2], init=init)
    assert (held.code.f - init.f).norm() < (free.code.f - init.f).norm()
    assert "reg" in held.history


def test_checkpoint_of_another_run_is_refused(G, targets, tmp_path):
    space = ls.FZPlus(G)
    ckpt = str(tmp_path / "run.pt")
    HybridInverter(space, steps=4, lr=0.05, lambda_per=0, progress=False).invert(targets, checkpoint=ckpt)
    with pytest.raises(ValueError, match="another run"):
        HybridInverter(space, steps=4, lr=0.05, lambda_per=0, progress=False).invert(targets[:2], checkpoint=ckpt)


def test_killed_run_resumes_to_the_same_result(G, targets, tmp_path):
    space = ls.FZPlus(G)
    ckpt = str(tmp_path / "run.pt")
    kwargs = dict(steps=30, lr=0.05, lambda_per=0, progress=False)
    full = HybridInverter(space, **kwargs).invert(targets, seed=1, init="random")

    class Killed(Exception):
        pass

    inv = HybridInverter(space, **kwargs)
    calls = {"n": 0}
    orig = space.project_

    def kill_after_12(code):
        calls["n"] += 1
        if calls["n"] == 13:  # 1 initial projection + 12 steps
            raise Killed
        return orig(code)

    space.project_ = kill_after_12
    with pytest.raises(Killed):
        inv.invert(targets, seed=1, init="random", checkpoint=ckpt, checkpoint_every=5)
    space.project_ = orig
    resumed = HybridInverter(space, **kwargs).invert(targets, seed=1, init="random", checkpoint=ckpt, checkpoint_every=5)
    assert torch.allclose(resumed.images, full.images, atol=1e-6)
    assert resumed.history["mse"].shape == (30, 4)
    assert torch.allclose(resumed.history["mse"], full.history["mse"], atol=1e-7)


def test_divergence_is_reported_with_images_and_step(G, targets):
    space = ls.WPlus(G)
    bad = targets.clone()
    inv = HybridInverter(space, steps=5, lr=0.01, lambda_per=0, progress=False)

    def nan_perceptual(x, y):
        out = torch.zeros(x.shape[0])
        out[1] = float("nan")
        return out

    inv.perceptual, inv.lambda_per = nan_perceptual, 1.0
    with pytest.raises(InversionDiverged, match=r"step 0 for images \[1\]") as e:
        inv.invert(bad)
    assert e.value.images == [1] and e.value.step == 0


def test_a_broken_generator_is_blamed_not_the_learning_rate(targets):
    from conftest import randomize_

    torch.manual_seed(1)
    broken = randomize_(ls.Generator(z_dim=32, w_dim=32, resolution=16, mapping_layers=2,
                                     channels={4: 32, 8: 16, 16: 8})).eval().requires_grad_(False)
    with torch.no_grad():
        broken.synthesis.layer("b8.conv0").weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(InversionDiverged, match="the generator itself renders NaN/inf .* a lower lr will not help"):
        HybridInverter(ls.WPlus(broken), steps=3, lambda_per=0, progress=False).invert(targets[:2])


def _ramp(*shape, lo=-1.0, hi=1.0, dtype=torch.float32):
    return torch.linspace(lo, hi, math.prod(shape)).reshape(shape).to(dtype)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 3, 8, 8), r"\[N, 3, 16, 16\]"),
    (torch.full((1, 3, 16, 16), 200.0), r"\[0, 255\]"),
    (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
    (_ramp(1, 3, 16, 16, lo=-1.5, hi=1.5), r"values in \[-1.5, 1.5\]"),
    (_ramp(1, 3, 16, 16, lo=0.0, hi=1.0), r"no value below 0 .* x \* 2 - 1"),
    (torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8), r"uint8 .* x.float\(\) / 127.5 - 1"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.int64), "real floating-point tensor .* got torch.int64"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.bool), "got torch.bool"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.complex64), "got torch.complex64"),
    (torch.zeros(1, 3, 16, 16, device="meta"), "holding data"),
    (torch.zeros(0, 3, 16, 16), "empty batch"),
    ([[0.0]], "got a list"),
])
def test_bad_targets_are_refused(G, bad, match):
    with pytest.raises(ValueError, match=match):
        HybridInverter(ls.W(G), steps=1, progress=False).invert(bad)


def test_targets_within_the_resampling_tolerance_are_accepted(G):
    from optimizers.hybrid import TARGET_TOLERANCE

    x = _ramp(1, 3, 16, 16, lo=-1 - TARGET_TOLERANCE / 2, hi=1 + TARGET_TOLERANCE / 2, dtype=torch.float64)
    res = HybridInverter(ls.W(G), steps=1, lambda_per=0, progress=False).invert(x)
    assert res.images.dtype == torch.float32


def test_identity_recorded_every_k_steps(G, targets):
    calls = []

    def ident(x, y):
        calls.append(1)
        return torch.ones(x.shape[0])

    res = HybridInverter(ls.W(G), steps=6, lambda_per=0, identity=ident, identity_every=3, progress=False).invert(targets[:2])
    h = res.history["identity"]
    assert h.shape == (6, 2) and len(calls) == 2
    assert torch.isnan(h[1]).all() and (h[3] == 1).all()


def _d_features(G):
    from latentspaces.discriminator import Discriminator
    from latentspaces.metrics.d_features import DiscriminatorFeatures

    torch.manual_seed(3)   # random weights (unit normal, equalised lr): features enough for a distance
    return DiscriminatorFeatures(Discriminator(G.resolution, {16: 8, 8: 8, 4: 8}))


@pytest.mark.slow
def test_compiled_step_equals_eager_to_rounding(G, targets):
    """compile=True: the first step's loss terms and gradients equal eager's to float rounding; after a few
    steps the images stay close (Adam amplifies rounding only in near-zero gradient components)."""
    kw = dict(steps=4, lr=0.01, lambda_per=1.0, lambda_reg=0.0, perceptual=_d_features(G), progress=False)
    eager, compiled = (HybridInverter(ls.FZPlus(G), compile=c, **kw) for c in (False, True))
    code = eager.initial_code(targets, "mean")
    grads = []
    for inv in (eager, compiled):
        c = code.clone()
        params = inv.space.parameters(c)
        for p in params:
            p.requires_grad_(True)
        terms, _ = inv.step_losses(c, targets, {})
        terms["loss"].sum().backward()
        grads.append(([p.grad for p in params], terms))
    (ge, te), (gc, tc) = grads
    for k in te:
        torch.testing.assert_close(tc[k], te[k], rtol=1e-5, atol=1e-7)
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())
    a, b = (inv.invert(targets, init="mean") for inv in (eager, compiled))
    assert (a.images - b.images).abs().max() < 0.05
    torch.testing.assert_close(a.history["loss"], b.history["loss"], rtol=1e-3, atol=1e-5)


def test_autocast_bfloat16_runs_in_float32_out_and_is_another_run(G, targets, tmp_path):
    kw = dict(steps=6, lr=0.05, lambda_per=0.0, progress=False)
    full = HybridInverter(ls.WPlus(G), **kw).invert(targets, init="mean")
    inv = HybridInverter(ls.WPlus(G), autocast="bfloat16", **kw)
    half = inv.invert(targets, init="mean", checkpoint=str(tmp_path / "bf16.pt"))
    assert half.images.dtype == torch.float32 and all(v.dtype == torch.float32 for v in half.history.values())
    assert not torch.equal(half.images, full.images)   # it is not float32 arithmetic...
    def mse(r):
        return (r.images - targets).square().mean().item()
    assert mse(half) == pytest.approx(mse(full), rel=0.2)   # ...but the same optimization
    with pytest.raises(ValueError, match="another run"):   # a float32 run does not resume a bfloat16 checkpoint
        HybridInverter(ls.WPlus(G), **kw).invert(targets, init="mean", checkpoint=str(tmp_path / "bf16.pt"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(compile="fast"), "compile must be"), (dict(autocast="float64"), "autocast must be"),
    (dict(autocast="float16"), "needs a CUDA device")])
def test_speed_switches_reject_unknown_values(G, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HybridInverter(ls.WPlus(G), **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 2.5}, "steps must be a whole number in 0 .. 100000, got 2.5"),
    ({"steps": -1}, "steps must be a whole number in 0 .. 100000"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"lambda_mse": -1.0}, "loss weights must be finite and >= 0, got {'lambda_mse': -1.0}"),
    ({"lambda_per": float("inf")}, "loss weights must be finite and >= 0"),
    ({"divergence_factor": float("nan")}, "divergence_factor must be a finite number > 1"),
])
def test_settings_are_checked_when_the_inverter_is_made(G, kwargs, message):
    with pytest.raises(ValueError) as info:
        HybridInverter(ls.W(G), progress=False, **kwargs)
    assert message in str(info.value)
