"""The shared loss engine, the one warp and the inverter's schedules, against hand computations and torchvision."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

import latentspaces as ls
from latentspaces.losses import (ReconstructionLoss, anchor_penalty, mean_absolute_error, mean_squared_error,
                                 pixel_distance, r1_penalty)
from experiments.training.warps import corner_homography, perspective_corners, perspective_warp, random_perspective
from optimizers import PTI, HybridInverter
from optimizers.schedules import ConstantSchedule, ProjectorSchedule


def _pair(n=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=gen) * 2 - 1, torch.rand(n, 3, 8, 8, generator=gen) * 2 - 1


def test_reconstruction_terms_match_a_float64_computation():
    y, x = _pair()
    def per(a, b):   # any [N] distance
        return (a - b).abs().flatten(1).amax(1)

    terms = ReconstructionLoss(per, lambda_pixel=2.0, lambda_per=0.5).per_image(y, x)
    y64, x64 = y.double(), x.double()
    mse = ((y64 - x64) ** 2).mean(dim=(1, 2, 3))
    expected = 2.0 * mse + 0.5 * (y64 - x64).abs().flatten(1).amax(1)
    assert torch.allclose(terms["pixel"].double(), mse, atol=1e-7)
    assert torch.allclose(terms["loss"].double(), expected, atol=1e-6)
    batch = ReconstructionLoss(per, lambda_pixel=2.0, lambda_per=0.5).batch(y, x)
    assert torch.allclose(batch["loss"].double(), expected.mean(), atol=1e-6)
    l1 = ReconstructionLoss(None, pixel="l1").batch(y, x)
    assert torch.allclose(l1["loss"].double(), (y64 - x64).abs().mean(), atol=1e-7) and l1["perceptual"] == 0
    assert "perceptual" not in ReconstructionLoss(per, lambda_per=0).per_image(y, x)   # weight 0: not computed


def test_distances_and_anchor():
    y, x = _pair()
    assert torch.allclose(mean_squared_error(y, x), pixel_distance(y, x).mean())
    assert torch.allclose(mean_absolute_error(y, x), pixel_distance(y, x, "l1").mean())
    fields = {"f": y, "w": x}
    anchors = {"f": torch.zeros_like(y)}
    assert torch.allclose(anchor_penalty(fields, anchors), y.square().flatten(1).mean(1))
    with pytest.raises(ValueError, match="one shape"):
        pixel_distance(y, x[:, :1])
    with pytest.raises(ValueError, match="pixel must be"):
        ReconstructionLoss(pixel="l3")
    with pytest.raises(ValueError, match=">= 0"):
        ReconstructionLoss(lambda_per=-1)


def test_r1_of_a_linear_critic_is_its_squared_weight_norm():
    weight = torch.randn(3 * 8 * 8, dtype=torch.float64)
    def D(img):
        return img.flatten(1) @ weight
    assert torch.allclose(r1_penalty(D, torch.randn(4, 3, 8, 8, dtype=torch.float64)), weight.square().sum())


def test_perspective_warp_equals_torchvision():
    """The one warp against torchvision's perspective (fill=None: zeros outside, as ours)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 24, 40, generator=gen)
    for _ in range(4):
        start, end = perspective_corners(24, 40, 0.6, gen)
        ours = perspective_warp(x, corner_homography(start, end, 24, 40))
        ref = TF.perspective(x, start, end, interpolation=TF.InterpolationMode.BILINEAR, fill=None)
        assert (ours - ref).abs().max() < 1e-4
    assert torch.allclose(perspective_warp(x, torch.eye(3)), x, atol=1e-5)
    assert torch.equal(random_perspective(x, p=0.0, generator=gen), x)


def test_projector_schedule_ramps_and_repeats():
    s = ProjectorSchedule(code_std=2.0, seed=4)
    assert s.lr(0, 100, 0.01) == 0.0 and s.lr(50, 100, 0.01) == pytest.approx(0.01)
    assert s.lr(99, 100, 0.01) < 1e-4
    code = ls.Code(w=torch.zeros(2, 5))
    a, b = s.perturb(3, 100, code).w, ProjectorSchedule(code_std=2.0, seed=4).perturb(3, 100, code).w
    assert torch.equal(a, b) and a.abs().max() > 0
    assert torch.equal(s.perturb(80, 100, code).w, code.w)                    # past 75% of the steps: no noise
    assert ConstantSchedule().perturb(0, 10, code) is code


def test_scheduled_inversion_resumes_to_the_same_result(small_G, tmp_path):
    """A schedule's noise depends on the step only, so a resumed run matches an uninterrupted one."""
    with torch.no_grad():
        targets = small_G(torch.randn(2, small_G.z_dim, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    space = ls.W(small_G)
    def make(steps):
        return HybridInverter(space, steps=steps, lr=0.02, lambda_per=0, lambda_reg=0, progress=False,
                              schedule=ProjectorSchedule(0.5, seed=1))
    full = make(12).invert(targets, init="mean")
    ckpt, calls, project = str(tmp_path / "ckpt.pt"), {"n": 0}, space.project_

    def kill_after_7(code):
        calls["n"] += 1
        if calls["n"] == 8:        # 1 initial projection + 7 steps: killed after the checkpoint of step 5
            raise KeyboardInterrupt
        return project(code)

    space.project_ = kill_after_7
    with pytest.raises(KeyboardInterrupt):
        make(12).invert(targets, init="mean", checkpoint=ckpt, checkpoint_every=5)
    space.project_ = project
    assert torch.load(ckpt, weights_only=True)["step"] == 5
    resumed = make(12).invert(targets, init="mean", checkpoint=ckpt, checkpoint_every=5)
    assert torch.allclose(resumed.code.w, full.code.w, atol=1e-6)
    other = HybridInverter(space, steps=12, lr=0.02, lambda_per=0, lambda_reg=0, progress=False,
                           schedule=ProjectorSchedule(0.5, seed=2))
    with pytest.raises(ValueError, match="another run"):   # another schedule is another run
        other.invert(targets, init="mean", checkpoint=ckpt)


def test_pti_pivot_gets_the_inverters_target_checks(small_G):
    with pytest.raises(ValueError, match="x / 127.5 - 1"):
        PTI(small_G, pivot_steps=2, tune_steps=0, progress=False).run(torch.full((1, 3, 32, 32), 200.0))
