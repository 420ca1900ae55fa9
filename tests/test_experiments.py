"""The experiments behind the `latentspaces` command, run tiny on the default model."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from experiments.cli import main
from experiments.runs import claim_out_dir
from latentspaces import assets


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_writes_table_grid_and_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--out", str(out), "--n", "3", "--steps", "3", "--spaces", "W,FZPlus", "--chunk", "2",
            "--identity", "none", "--device", "cpu"]
    main(args)
    summary = _rows(out / "space_comparison.csv")
    assert [r["space"] for r in summary] == ["W", "FZPlus"]
    assert {"space", "mse", "ssim", "seconds_per_image"} <= set(summary[0])
    assert all(int(r["n"]) == 3 for r in summary)
    assert (out / "reconstructions.png").is_file() and "| W |" in (out / "space_comparison.md").read_text()
    per_image = _rows(out / "space_comparison_per_image.csv")
    assert len(per_image) == 6
    # An interrupted run: drop the last chunk of FZPlus; the rerun redoes only that chunk.
    with open(out / "space_comparison_per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(per_image[0]))
        w.writeheader()
        w.writerows(per_image[:-1])
    before = {(r["space"], r["target"]): r["mse"] for r in per_image[:-1]}
    main(args)
    again = _rows(out / "space_comparison_per_image.csv")
    assert len(again) == 6  # only the missing FZPlus chunk (target 2) was redone
    assert (again[-1]["space"], again[-1]["target"]) == ("FZPlus", "2")
    assert {(r["space"], r["target"]): r["mse"] for r in again[:5]} == before
    # Other settings, or other targets under the same indices, would mix results: refused.
    with pytest.raises(ValueError, match=r"other settings \(recipe='paper, steps=3' there, 'paper, steps=4' now, steps=3 there, 4 now\)"):
        main([a if a != "3" else "4" for a in args] + ["--debug"])  # --debug: the exception, not its one-line report
    settings = json.loads((out / "inversion_settings.json").read_text())
    targets = assets.heldout_targets(3)
    with pytest.raises(ValueError, match="target 1 is not the image inverted as target 1"):
        claim_out_dir(out, {k: v for k, v in settings.items() if k != "targets"}, targets[[0, 2, 1]])
    claim_out_dir(out, {k: v for k, v in settings.items() if k != "targets"}, targets[:2])  # a prefix is fine


@pytest.mark.slow
def test_score_identity_fills_what_compare_would_have_written(tmp_path):
    flags = ["--n", "3", "--steps", "2", "--spaces", "W,FZPlus", "--chunk", "2", "--perceptual", "none",
             "--device", "cpu"]
    main(["compare", "--out", str(tmp_path / "with"), "--identity", "dlib", *flags])
    later = tmp_path / "later"
    main(["compare", "--out", str(later), "--identity", "none", *flags])
    assert all(r["identity"] == "nan" for r in _rows(later / "space_comparison_per_image.csv"))
    main(["score-identity", "--out", str(later), "--device", "cpu"])
    expected = {(r["space"], r["target"]): r["identity"] for r in _rows(tmp_path / "with" / "space_comparison_per_image.csv")}
    got = {(r["space"], r["target"]): r["identity"] for r in _rows(later / "space_comparison_per_image.csv")}
    assert got == expected and len(got) == 6 and "nan" not in got.values()
    assert json.loads((later / "inversion_settings.json").read_text())["identity"] == "dlib-cosine"
    main(["compare", "--out", str(later), "--identity", "dlib", *flags])  # the folder now resumes with dlib
    assert len(_rows(later / "space_comparison_per_image.csv")) == 6


def test_score_identity_refuses_codes_that_do_not_match_their_images(tmp_path):
    from safetensors.torch import load_file, save_file

    import latentspaces as ls
    from experiments.studies.inversions import fill_identity

    out = tmp_path / "cmp"
    main(["compare", "--out", str(out), "--n", "2", "--steps", "2", "--spaces", "W", "--perceptual", "none",
          "--identity", "none", "--device", "cpu"])
    path = out / "codes" / "W_0.safetensors"
    saved = load_file(str(path))
    saved["code.w"] = saved["code.w"] + 0.5  # as if inverted with another generator
    save_file(saved, str(path))
    G = ls.load_generator("default")
    with pytest.raises(ValueError, match="do not regenerate the images saved"):
        fill_identity(out, G, assets.heldout_targets(2), lambda x, y: torch.ones(len(x)), progress=False)


@pytest.mark.slow
def test_identity_curves_tiny_reuse_compare_inversions(tmp_path):
    out = tmp_path / "curves"
    flags = ["--out", str(out), "--n", "2", "--steps", "2", "--perceptual", "none", "--device", "cpu", "--quick"]
    main(["compare", "--spaces", "FZPlus", *flags])
    codes = (out / "codes" / "FZPlus_0.safetensors").read_bytes()
    main(["identity-curves", "--spaces", "WPlus,FZPlus", "--edit-sizes", "0.02,0.04", *flags])
    assert (out / "codes" / "FZPlus_0.safetensors").read_bytes() == codes  # reused, not inverted again
    per_image = _rows(out / "space_comparison_per_image.csv")
    assert sorted((r["space"], r["target"]) for r in per_image) == [("FZPlus", "0"), ("FZPlus", "1"),
                                                                   ("WPlus", "0"), ("WPlus", "1")]
    rows = _rows(out / "identity_curves.csv")
    assert {"space", "target", "direction", "alpha", "identity", "edit_change"} <= set(rows[0])
    assert all(float(r["edit_change"]) < 1e-4 for r in rows if float(r["alpha"]) == 0.0)   # no edit: no change (rounding)
    assert all(float(r["edit_change"]) > 0 for r in rows if abs(float(r["alpha"])) == 2.0)
    assert len(rows) == 2 * 3 * 11 * 2  # spaces x directions x alphas x targets
    assert {float(r["alpha"]) for r in rows} == {round(a, 2) for a in torch.linspace(-2, 2, 11).tolist()}
    zero = [float(r["identity"]) for r in rows if float(r["alpha"]) == 0.0]
    assert all(-1 <= v <= 1 for v in zero)
    for name in ("identity_curves.png", "identity_curves.pdf", "identity_summary.csv", "random_directions.png",
                 "matched_edits.csv", "tradeoff.png"):
        assert (out / name).is_file(), name
    # identity at matched edit size: every (space, target, direction, sign, size) once, each reached size hit
    matched = _rows(out / "matched_edits.csv")
    assert len(matched) == 2 * 2 * 3 * 2 * 2   # spaces x targets x directions x signs x sizes
    hit = [r for r in matched if r["alpha"] != "nan"]
    assert hit and all(abs(float(r["edit_change"]) - float(r["size"])) <= 0.02 * float(r["size"]) + 1e-6 for r in hit)
    assert all((float(r["alpha"]) > 0) == (r["sign"] == "1") for r in hit)
    summary = {r["space"]: r for r in _rows(out / "identity_summary.csv")}
    assert {"identity_at_size_0.04", "reached_at_size_0.04", "alpha_at_size_0.04"} <= set(summary["FZPlus"])
    main(["paired", "--out", str(out), "--a", "FZPlus"])
    measures = {r["measure"] for r in _rows(out / "paired_statistics.csv")}
    assert "edit identity at edit size 0.04, per edit" in measures


def test_invert_edit_directions_commands(tmp_path):
    main(["invert", "--out", str(tmp_path / "inv"), "--n", "2", "--steps", "3", "--space", "FZPlus",
          "--perceptual", "none", "--device", "cpu"])
    main(["directions", "--out", str(tmp_path / "dirs"), "--method", "ganspace", "--kind", "z", "--count", "2",
          "--samples", "2000", "--device", "cpu"])
    main(["edit", "--out", str(tmp_path / "edit"), "--codes", str(tmp_path / "inv" / "codes.safetensors"),
          "--direction", str(tmp_path / "dirs" / "ganspace_z.safetensors"), "--alphas=-1,0,1", "--device", "cpu"])
    assert (tmp_path / "edit" / "edit_ganspace_0.png").is_file()
    with pytest.raises(ValueError, match="'w'-space direction cannot edit FZPlus"):
        main(["directions", "--out", str(tmp_path / "dirs"), "--method", "sefa", "--count", "2", "--device", "cpu"])
        main(["edit", "--out", str(tmp_path / "edit"), "--codes", str(tmp_path / "inv" / "codes.safetensors"),
              "--direction", str(tmp_path / "dirs" / "sefa_w.safetensors"), "--device", "cpu", "--debug"])
