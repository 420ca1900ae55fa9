"""Identity at matched edit size: per-image alphas, the bracketed search, and its rows."""

from __future__ import annotations

import math

import pytest
import torch

import latentspaces as ls
from experiments.studies.matched_edits import alphas_for_size, edit_with_alphas, matched_edit_rows, pixel_change
from latentspaces import assets
from latentspaces.directions import random_directions


@pytest.fixture(scope="module")
def G():
    return ls.load_generator("default")


@pytest.mark.parametrize("name", ls.SPACE_ORDER)
def test_one_alpha_per_image_equals_editing_each_image_alone(G, name):
    space = ls.build_space(name, G, ls.PNStats.fit(G, n_samples=2000) if ls.SPACES[name].uses_pn_stats else None)
    code = space.random(3, seed=1)
    (d,) = random_directions(1, code[space.edit_field].shape[-1], kind=space.kind, seed=2)
    alphas = torch.tensor([-1.5, 0.0, 2.5])
    together = edit_with_alphas(space, code, d, alphas)
    with torch.no_grad():
        alone = torch.cat([space.synthesize(space.edit(code.select(slice(i, i + 1)), d, float(a)))
                           for i, a in enumerate(alphas)])
    torch.testing.assert_close(together, alone, atol=5e-5, rtol=0)   # batched vs single convolutions: rounding
    with pytest.raises(ValueError, match="one per code"):
        edit_with_alphas(space, code, d, alphas[:2])


def test_the_search_finds_the_alpha_of_a_known_linear_change_and_nan_where_it_saturates():
    unedited = torch.zeros(4, 3, 8, 8)
    slopes = torch.tensor([0.01, 0.03, 0.2, 0.0])   # change(alpha) = slope |alpha|; the last never changes

    def render(a):
        return unedited + (slopes * a).reshape(-1, 1, 1, 1)

    for sign in (1, -1):
        found = alphas_for_size(render, unedited, 0.04, sign=sign, max_alpha=16)
        expected = sign * 0.04 / slopes[:3]
        torch.testing.assert_close(found[:3], expected.float(), rtol=0.02, atol=0)
        assert math.isnan(float(found[3]))
    # a saturating edit (tanh) never reaches 0.5: NaN, not the largest alpha tried
    sat = alphas_for_size(lambda a: unedited + 0.3 * torch.tanh(a).reshape(-1, 1, 1, 1), unedited, 0.5)
    assert torch.isnan(sat).all()
    with pytest.raises(ValueError, match="size"):
        alphas_for_size(render, unedited, 0.0)


def test_matched_rows_on_the_default_model_reach_each_size_within_tolerance(G):
    space = ls.FZPlus(G)
    targets = assets.heldout_targets(2)
    code = space.mean(2)
    with torch.no_grad():
        unedited = space.synthesize(code)
    (d,) = random_directions(1, code[space.edit_field].shape[-1], kind=space.kind, seed=0)

    def cosine(x, y):
        return torch.nn.functional.cosine_similarity(x.flatten(1), y.flatten(1))

    rows = matched_edit_rows(lambda a: edit_with_alphas(space, code, d, a), unedited, targets, cosine, (0.02, 0.04))
    assert len(rows) == 2 * 2 * 2   # signs x sizes x targets
    for r in rows:
        assert math.isfinite(r["alpha"]) and abs(r["edit_change"] - r["size"]) <= 0.02 * r["size"] + 1e-7
        images = edit_with_alphas(space, code, d, torch.tensor([r["alpha"]] * 2))
        again = float(pixel_change(images, unedited)[r["target"]])
        assert again == pytest.approx(r["edit_change"], abs=1e-6)   # the recorded change is the edit's
    by = {(r["target"], r["sign"], r["size"]): abs(r["alpha"]) for r in rows}
    assert all(by[(t, s, 0.04)] > by[(t, s, 0.02)] for t in (0, 1) for s in (1, -1))   # a larger change, a larger step


def test_f_layer_sweep_rows_shares_resume_and_refusal(G, tmp_path):
    from experiments.rows import RunFolderError
    from experiments.studies.f_layer_sweep import FLayerSweepConfig, f_share, run_f_layer_sweep, sweep_layers
    from optimizers import QUICK

    assert sweep_layers(G) == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0"]
    assert f_share(G, "b4.conv1") == pytest.approx(256 * 4 * 4 / (3 * 64 * 64))

    def cosine(x, y):
        return torch.nn.functional.cosine_similarity(x.flatten(1), y.flatten(1))

    def config(recipe):
        return FLayerSweepConfig(recipe=recipe, layers=("b4.conv1", "b16.conv0"), directions=1, direction_samples=300,
                                 edit_sizes=(0.04,))
    kw = dict(progress=False)
    targets = assets.heldout_targets(2)
    summary = run_f_layer_sweep(tmp_path, G, targets, cosine, config(QUICK.replace(steps=1)), **kw)
    assert [(r["space"], r["layer"]) for r in summary] == [("FZPlus", "b4.conv1"), ("FZPlus", "b16.conv0"),
                                                          ("FWPlus", "b4.conv1"), ("FWPlus", "b16.conv0")]
    assert all(r["edit_change_at_2"] > 0 and 0 <= r["reached_at_size_0.04"] <= 1 for r in summary)
    assert (tmp_path / "f_layer_sweep.png").is_file()
    rows = (tmp_path / "f_layer_sweep.csv").read_text()
    assert rows.count("\n") == 1 + 4 * 2
    run_f_layer_sweep(tmp_path, G, targets, cosine, config(QUICK.replace(steps=1)), **kw)   # resumed: nothing redone
    assert (tmp_path / "f_layer_sweep.csv").read_text() == rows
    with pytest.raises(RunFolderError, match="other settings"):
        run_f_layer_sweep(tmp_path, G, targets, cosine, config(QUICK.replace(steps=2)), **kw)
