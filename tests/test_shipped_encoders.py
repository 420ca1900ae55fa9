"""The encoders shipped with the default model: load by name, and do what they are for."""

from __future__ import annotations

import pytest
import torch

import latentspaces as ls
from encoders import COMPENSATION_HEADS, SDIC, FEncoder, WPlusEncoder, load_encoder
from latentspaces.assets import heldout_targets
from latentspaces.interfaces import CompensationHead
from latentspaces.metrics.image import ssim
from optimizers import HybridInverter


@pytest.fixture(scope="module")
def G():
    return ls.load_generator("default")


@pytest.fixture(scope="module")
def targets():
    return heldout_targets(8)


def test_shipped_encoders_load_by_name():
    assert isinstance(load_encoder("default-f"), FEncoder)
    assert isinstance(load_encoder("default-wplus"), WPlusEncoder)
    assert isinstance(load_encoder("default-sdic"), SDIC)


@pytest.mark.slow
def test_encoder_initialised_fzplus_beats_wavg_wplus(G, targets):
    """The encoder-initialisation check, shortened for the suite (100 steps, 8 targets; the 200-step, 64-target run is
    `python -m experiments.studies.encoder_init`)."""
    kw = dict(steps=100, lr=0.05, lambda_per=0, lambda_reg=0, progress=False)
    fz = HybridInverter(ls.FZPlus(G), encoder=load_encoder("default-f"), **kw).invert(targets, init="encoder")
    wp = HybridInverter(ls.WPlus(G), **kw).invert(targets, init="mean")
    mse_fz = (fz.images - targets).square().mean()
    mse_wp = (wp.images - targets).square().mean()
    assert mse_fz < mse_wp
    # and the encoder's start is better than the mean start of the same space
    assert fz.history["mse"][0].mean() < HybridInverter(ls.FZPlus(G), **{**kw, "steps": 1}).invert(
        targets, init="mean").history["mse"][0].mean()


@torch.no_grad()
def test_wplus_encoder_improves_on_the_mean(G, targets):
    ws = load_encoder("default-wplus")(targets)
    x0 = G.synthesis(ws)
    x_avg = G.synthesis(G.broadcast(G.w_avg.expand(len(targets), -1)))
    mse = lambda y: (y - targets).square().mean().item()  # noqa: E731
    assert mse(x0) < 0.7 * mse(x_avg)                      # the encoder beats w_avg


@pytest.mark.parametrize("name", COMPENSATION_HEADS)
@torch.no_grad()
def test_shipped_heads_beat_their_base_encoder_and_edit_from_their_reconstruction(G, targets, name):
    base = load_encoder("default-wplus")
    head = load_encoder(f"default-{name}").bind(base)
    assert isinstance(head, CompensationHead)
    ws = base(targets)
    x0 = G.synthesis(ws)
    comp = head.compensate(G, targets, ws, x0)
    mse = lambda y: (y - targets).square().mean().item()  # noqa: E731
    assert mse(comp.image) < 0.5 * mse(x0)                            # the head beats its base encoder on MSE
    assert ssim(comp.image, targets).mean() > ssim(x0, targets).mean()   # and on SSIM
    unedited = head.edit(G, comp, torch.zeros_like(comp.ws))
    if isinstance(head, SDIC) and head.fusion == "base":   # the released rule: off by G_l(W') - G_l(W) at delta 0
        assert 0 < (unedited - comp.image).abs().mean() < 0.05
    else:
        torch.testing.assert_close(unedited, comp.image, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_compensation_command_writes_table_grid_and_resumes(tmp_path):
    import csv

    from experiments.cli import main

    out = tmp_path / "comp"
    args = ["compensation", "--quick", "--out", str(out), "--n", "1", "--steps", "3", "--pivot-steps", "3",
            "--tune-steps", "2", "--device", "cpu", "--edit-sizes", "0.04"]
    main(args)
    with open(out / "compensation_comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["base", *COMPENSATION_HEADS, "pti", "fzplus"]
    assert {"mse", "ssim", "identity", "edit_identity", "edit_strength", "seconds_per_image"} <= set(rows[0])
    assert float(rows[0]["edit_strength"]) == pytest.approx(1.0)     # the base encoder's edits are the unit
    assert (out / "compensation_grid.png").is_file() and "| sdic |" in (out / "compensation_comparison.md").read_text()
    assert "identity_at_size_0.04" in rows[0]
    matched_csv = out / "compensation_matched_edits.csv"

    def matched_count(method):
        with open(matched_csv, newline="") as f:
            return sum(r["method"] == method for r in csv.DictReader(f))
    per_method = 3 * 2 * 1 * 1   # directions x signs x sizes x targets
    assert all(matched_count(m) == per_method for m in ["base", *COMPENSATION_HEADS, "pti", "fzplus"])
    # an interrupted run: drop the last method's rows; the rerun redoes only that method
    per_image = out / "compensation_per_image.csv"
    lines = per_image.read_text().splitlines()
    per_image.write_text("\n".join(line for line in lines if not line.startswith("fzplus")) + "\n")
    before = (out / "images" / "base.safetensors").stat().st_mtime_ns
    main(args)
    assert (out / "images" / "base.safetensors").stat().st_mtime_ns == before
    assert sum(line.startswith("fzplus") for line in per_image.read_text().splitlines()) == 1
    assert matched_count("fzplus") == per_method   # the redone method's matched rows replaced, not added
    # a rerun with other settings would mix rows of two settings in one table: refused, nothing rewritten
    from experiments.runs import RunFolderError
    settings = (out / "compensation_settings.json").read_text()
    other = list(args)
    other[other.index("--steps") + 1] = "4"
    with pytest.raises(RunFolderError, match="other settings"):
        main(other + ["--debug"])
    assert (out / "compensation_settings.json").read_text() == settings

