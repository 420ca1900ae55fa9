"""Paired comparisons between spaces, on hand-made per-image and per-edit rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.cli import main
from experiments.runs import read_rows, write_rows
from experiments.studies.identity_curves import FIELDS as CURVE_FIELDS
from experiments.studies.inversions import PER_IMAGE_FIELDS
from experiments.studies.paired_statistics import paired_test, run_paired_statistics


def test_paired_test_counts_wins_in_the_measure_sense_and_gives_the_exact_p():
    b = np.arange(10, dtype=float)
    a = b + np.arange(1, 11) * 0.1          # a larger on all 10 pairs, distinct differences
    up = paired_test(a, b, higher_is_better=True)
    # Exact two-sided signed-rank p with all 10 differences of one sign: 2 / 2**10.
    assert up["p_wilcoxon"] == pytest.approx(2 / 1024, rel=1e-9)
    assert (up["n"], up["a_better"], up["b_better"]) == (10, 10, 0)
    assert up["mean_diff"] == pytest.approx(0.55)
    down = paired_test(a, b, higher_is_better=False)   # e.g. MSE: larger is worse
    assert (down["a_better"], down["b_better"]) == (0, 10)
    assert math.isnan(paired_test(b, b, True)["p_wilcoxon"])
    with pytest.raises(ValueError, match="equally long"):
        paired_test(a, b[:5], True)
    with pytest.raises(ValueError, match="NaN"):
        paired_test(np.array([1.0, math.nan]), np.array([0.0, 0.0]), True)


def _recon_row(space, target, mse, identity="nan"):
    return {"space": space, "target": target, "mse": mse, "psnr": -10 * math.log10(mse), "ssim": 1 - mse,
            "ms_ssim": 1 - mse, "perceptual": mse, "identity": identity, "seconds": 1.0}


def _write_run(out):
    out.mkdir()
    rows = [_recon_row("FZPlus", t, 0.001 * (t + 1)) for t in range(6)]
    # W: worse on targets 0-3, better on 4; target 5 exists only for FZPlus and is left out of the pairs.
    rows += [_recon_row("W", t, 0.001 * (t + 1) * (2 if t < 4 else 0.5)) for t in range(5)]
    write_rows(out / "space_comparison_per_image.csv", rows, PER_IMAGE_FIELDS)
    def w_identity(t, d, alpha):
        if alpha == "0.00":
            return 0.95
        if t == 0:  # W wins one edit by a lot and loses three by a little: per edit 3:1 for FZPlus, per target W
            return 1.0 if (d, alpha) == ("pc0", "2.00") else 0.8999
        return 0.8

    curves = []
    for t in range(3):
        for d in ("pc0", "pc1"):
            for alpha in ("-2.00", "0.00", "2.00"):
                curves += [{"space": "FZPlus", "target": t, "direction": d, "alpha": alpha,
                            "identity": 0.99 if alpha == "0.00" else 0.9},
                           {"space": "W", "target": t, "direction": d, "alpha": alpha,
                            "identity": w_identity(t, d, alpha)}]
    write_rows(out / "identity_curves.csv", curves, CURVE_FIELDS)


def test_run_paired_statistics_pairs_by_target_and_edit(tmp_path):
    out = tmp_path / "run"
    _write_run(out)
    rows = {r["measure"]: r for r in run_paired_statistics(out, "FZPlus")}
    assert "identity" not in rows                      # NaN identity in that run: no test, not a fake one
    mse = rows["mse"]
    assert (mse["b"], mse["n"], mse["a_better"], mse["b_better"]) == ("W", 5, 4, 1)
    assert rows["psnr"]["a_better"] == 4               # higher PSNR is better, same pairs
    edit = rows["edit identity |alpha|=2, per edit"]   # 3 targets x 2 directions x 2 signs
    assert (edit["n"], edit["a_better"], edit["b_better"]) == (12, 11, 1)
    per_target = rows["edit identity |alpha|=2, per target"]
    # Target 0: W mean over its 4 edits (1.0 + 3 x 0.8999) / 4 = 0.924925 > 0.9: W wins that target.
    assert (per_target["n"], per_target["a_better"], per_target["b_better"]) == (3, 2, 1)
    assert per_target["mean_b"] == pytest.approx((0.924925 + 0.8 + 0.8) / 3)
    everything = rows["edit identity, mean over all alphas, per target"]
    # Per target over 2 directions x 3 alphas: FZPlus (4 x 0.9 + 2 x 0.99) / 6 = 0.93; W target 0
    # (1.0 + 3 x 0.8999 + 2 x 0.95) / 6 = 0.93328 > 0.93, targets 1, 2 (4 x 0.8 + 2 x 0.95) / 6 = 0.85.
    assert (everything["n"], everything["a_better"], everything["b_better"]) == (3, 2, 1)
    assert everything["mean_a"] == pytest.approx(0.93)
    assert len(read_rows(out / "paired_statistics.csv")) == len(rows)
    md = (out / "paired_statistics.md").read_text()
    assert "\\|alpha\\|=2" in md and all(line.count(" | ") == 10 for line in md.splitlines()[2:])
    assert everything["mean_a_calibrated"] == ""       # no calibration recorded in this folder
    # with the folder's identity calibration: identity means also on its scale, the test itself unchanged
    import json

    from latentspaces.metrics.identity_calibration import IdentityCalibration
    cal = IdentityCalibration(metric="dlib-cosine", n_targets=3, impostor=0.8, impostor_std=0.02, genuine=0.98,
                              genuine_std=0.01, threshold=0.9, eer=0.0)
    (out / "identity_calibration.json").write_text(json.dumps(cal.as_dict()))
    again = {r["measure"]: r for r in run_paired_statistics(out, "FZPlus")}
    calibrated = again["edit identity, mean over all alphas, per target"]
    assert calibrated["mean_a_calibrated"] == pytest.approx((0.93 - 0.8) / 0.2)
    assert calibrated["mean_diff_calibrated"] == pytest.approx(calibrated["mean_diff"] / 0.2)
    assert calibrated["p_wilcoxon"] == everything["p_wilcoxon"] and again["mse"]["mean_a_calibrated"] == ""
    assert "impostor baseline 0.800" in (out / "paired_statistics.md").read_text()


def test_paired_refuses_unknown_spaces_and_empty_folders(tmp_path, capsys):
    with pytest.raises(ValueError, match="neither"):
        run_paired_statistics(tmp_path, "FZPlus")
    out = tmp_path / "run"
    _write_run(out)
    with pytest.raises(ValueError, match="'S'"):
        run_paired_statistics(out, "S")
    with pytest.raises(ValueError, match="no rows"):
        run_paired_statistics(out, "FZPlus", ["W", "PN"])
    main(["paired", "--out", str(out), "--a", "W", "--b", "FZPlus", "--n", "2"])
    printed = capsys.readouterr().out
    assert "| W | FZPlus | mse | 2 | 0 | 2 |" in printed


def test_paired_compares_compensation_methods(tmp_path, capsys):
    """A compensation folder pairs methods per target: reconstruction metrics and the edit identity."""
    from experiments.studies.compensation import FIELDS as COMPENSATION_FIELDS
    from experiments.studies.compensation import PER_IMAGE_CSV as COMPENSATION_CSV

    out = tmp_path / "comp"
    out.mkdir()
    rows = []
    for t in range(8):
        for method, mse, edit_identity in (("pti", 0.002 + 0.0001 * t, 0.90), ("hfgi", 0.003 + 0.0002 * t, 0.92 + 0.001 * t)):
            rows.append({"method": method, "target": t, "mse": mse, "psnr": -10 * math.log10(mse), "ssim": 1 - mse,
                         "ms_ssim": 1 - mse, "perceptual": mse, "identity": 0.95, "edit_identity": edit_identity,
                         "edit_change": 0.05, "seconds": 1.0, "images_sha256": "x"})
    write_rows(out / COMPENSATION_CSV, rows, COMPENSATION_FIELDS)
    results = {r["measure"]: r for r in run_paired_statistics(out, "pti", ["hfgi"])}
    assert (results["mse"]["a_better"], results["mse"]["b_better"], results["mse"]["n"]) == (8, 0, 8)
    assert results["mse"]["p_wilcoxon"] == pytest.approx(2 / 256, rel=1e-9)   # all 8 of one sign, exact test
    assert (results["edit_identity"]["a_better"], results["edit_identity"]["b_better"]) == (0, 8)
    assert math.isnan(results["identity"]["p_wilcoxon"])                      # equal everywhere
    main(["paired", "--out", str(out), "--a", "hfgi"])                          # b: every other method
    assert "| hfgi | pti | mse | 8 | 0 | 8 |" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"methods \['sdic'\] have no rows"):
        run_paired_statistics(out, "pti", ["sdic"])
