"""PTI as released (danielroich/PTI) and this project's earlier form: the recipe's seven points, checked one by one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from optimizers import PTI, PTI_RECIPES, PTIRecipe
from optimizers.pti import noise_regularization, sampled_w_start, tuning_distance_name


def _mse(x, y):
    return (x - y).square().flatten(1).mean(1)


def test_noise_regularization_is_the_projectors_pyramid_of_autocorrelations():
    # a constant map: every level's two shifted means are 1, squared: 2 per level; 16 px has levels 16 and 8
    assert float(noise_regularization([torch.ones(16, 16)])) == pytest.approx(4.0)
    assert float(noise_regularization([torch.ones(4, 4)])) == pytest.approx(2.0)   # below 8 px: one level
    v = torch.randn(32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected, level = 0.0, v
    while True:   # float64 by hand: 32, 16, 8
        expected += float((level * level.roll(1, 1)).mean() ** 2 + (level * level.roll(1, 0)).mean() ** 2)
        if level.shape[0] <= 8:
            break
        level = level.reshape(level.shape[0] // 2, 2, level.shape[1] // 2, 2).mean((1, 3))
    assert float(noise_regularization([v.float()])) == pytest.approx(expected, rel=1e-4)


def test_released_pivot_starts_from_600_sampled_w_and_leaves_the_noise_of_G(small_G):
    start, spread = sampled_w_start(small_G, 600)
    z = torch.from_numpy(np.random.RandomState(123).randn(600, small_G.z_dim)).double()
    w = small_G.double().mapping(z)
    small_G.float()
    torch.testing.assert_close(start.double(), w.mean(0, keepdim=True), rtol=1e-5, atol=1e-5)
    assert spread == pytest.approx(float(((w - w.mean(0)).square().sum() / 600).sqrt()), rel=1e-5)
    targets = small_G(torch.randn(1, small_G.z_dim, generator=torch.Generator().manual_seed(1))).detach()
    noise_before = {k: v.clone() for k, v in small_G.state_dict().items() if k.endswith("noise_const")}
    pti = PTI(small_G, progress=False, pivot_steps=40)
    pivot = pti.project(targets)
    assert pivot.shape == (1, small_G.w_dim) and not pivot.requires_grad
    for k, v in small_G.state_dict().items():   # the noise maps were optimised on a copy and dropped
        if k.endswith("noise_const"):
            torch.testing.assert_close(v, noise_before[k], rtol=0, atol=0)
    with torch.no_grad():
        before = _mse(small_G.synthesis(small_G.broadcast(start)), targets)
        after = _mse(small_G.synthesis(small_G.broadcast(pivot)), targets)
    assert float(after) < float(before)


def test_released_tuning_stops_before_the_step_and_steps_per_image(small_G):
    targets = small_G(torch.randn(2, small_G.z_dim, generator=torch.Generator().manual_seed(2))).detach().clamp(-1, 1)
    pivots = small_G.mapping(torch.randn(2, small_G.z_dim, generator=torch.Generator().manual_seed(3)))
    calls = []

    def distance(x, y):   # under the threshold from the third call on
        calls.append(1)
        return torch.full((x.shape[0],), 1.0 if len(calls) < 3 else 0.0) + 0 * x.flatten(1).mean(1)

    pti = PTI(small_G, tune_perceptual=distance, progress=False, tune_steps=10)
    tuned, steps, history = pti.tune(targets[:1], pivots[:1])
    assert steps == 2 and len(history["loss"]) == 3   # the third pass measured, stopped, not stepped
    # several images on one G: one Adam step per image per iteration, no early stop (the multi-image coach)
    calls.clear()
    tuned, steps, history = pti.tune(targets, pivots)
    assert steps == 10 and len(history["loss"]) == 20
    summed = PTI(small_G, "ours", perceptual=distance, progress=False, tune_steps=10, stop_threshold=0.5)
    calls.clear()
    _, steps, history = summed.tune(targets, pivots)
    assert steps == 2 and history["loss"].shape == (3, 2)   # one step on the summed loss; stops when all are under


def test_released_locality_moves_each_row_alpha_over_sqrt_num_ws(small_G, monkeypatch):
    seen = []
    G0 = small_G
    original = type(G0.synthesis).forward

    def spy(self, ws, noise_mode="const", **kw):
        seen.append((ws.detach().clone(), noise_mode))
        return original(self, ws, noise_mode=noise_mode, **kw)

    monkeypatch.setattr(type(G0.synthesis), "forward", spy)
    pti = PTI(G0, progress=False)
    G1 = copy.deepcopy(G0)
    pivots = G0.mapping(torch.randn(1, G0.z_dim, generator=torch.Generator().manual_seed(4)))
    pti._locality_loss(G0, G1, pivots, torch.Generator().manual_seed(5))
    ws, mode = seen[0]
    step = (ws - G0.broadcast(pivots)).norm(dim=-1)   # per row
    torch.testing.assert_close(step, torch.full_like(step, 30.0 / G0.num_ws ** 0.5), rtol=1e-4, atol=1e-4)
    assert mode == "none" and all(m == "none" for _, m in seen)


def test_recipes_and_the_named_stand_in(small_G):
    released, ours = PTI_RECIPES["released"], PTI_RECIPES["ours"]
    assert (released.pivot, released.w_samples, released.stop_threshold, released.multi_image, released.locality) \
        == ("projector", 600, 0.06, "step-per-image", False)
    assert (released.pivot_steps, released.tune_steps, released.pivot_lr, released.tune_lr) == (450, 350, 0.01, 3e-4)
    assert (ours.pivot, ours.w_samples, ours.stop_threshold, ours.multi_image) == ("inverter", 10_000, None, "summed")

    class Distance:
        name = "d-features"

        def __call__(self, x, y):
            return _mse(x, y)

    name = tuning_distance_name(released, Distance())
    assert name == "lpips-alex" or name.startswith("d-features (stand-in for lpips-alex: ")
    assert tuning_distance_name(ours, Distance()) == "d-features"
    record = PTI(small_G, perceptual=Distance(), progress=False).record()
    assert record["tune_distance"] == name and record["pivot_distance"] == "d-features"
    with pytest.raises(ValueError, match="unknown PTI recipe"):
        PTI(small_G, "paper")
    with pytest.raises(ValueError, match="pivot must be one of"):
        PTIRecipe("x", pivot="sgd")
