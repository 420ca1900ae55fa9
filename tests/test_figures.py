"""Labelled grids and the distortion-editability trade-off figure, from a run folder's rows."""

from __future__ import annotations

import json

import pytest
import torch

from experiments.figures import TradeoffPoint, labelled_grid, pareto_front, tile_caption
from experiments.runs import append_rows, read_rows, write_rows
from experiments.studies.identity_curves import CURVES, CURVES_CSV, representative_target
from experiments.studies.inversions import PER_IMAGE, PER_IMAGE_CSV
from experiments.studies.tradeoff import tradeoff_points, write_tradeoff
from latentspaces.metrics.identity_calibration import IdentityCalibration


def test_pareto_front_keeps_exactly_the_undominated_points():
    pts = [TradeoffPoint("a", 1.0, 0, 0.5, 0), TradeoffPoint("b", 2.0, 0, 0.8, 0),
           TradeoffPoint("c", 3.0, 0, 0.6, 0), TradeoffPoint("d", 0.5, 0, 0.4, 0)]
    assert [p.name for p in pareto_front(pts)] == ["d", "a", "b"]   # c: b has less distortion and more identity


def test_labelled_grid_checks_its_labels(tmp_path):
    rows = [torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.full((3, 3, 8, 8), 200, dtype=torch.uint8)]
    labelled_grid(tmp_path / "g.png", rows, ["targets", "W"], ["t0", "t1", "t2"], [None, ["a", "", "c"]], "title")
    assert (tmp_path / "g.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="row labels"):
        labelled_grid(tmp_path / "g.png", rows, ["targets"], ["t0", "t1", "t2"])
    assert tile_caption({"mse": "0.00123", "identity": "nan"}) == "0.0012" and tile_caption(None) == ""


def _run_folder(out, calibrated: bool):
    recon = [{**{f: "0.5" for f in PER_IMAGE.fields}, "space": s, "target": str(t), "mse": str(m * (1 + t)),
              "identity": "0.9", "codes_sha256": "0" * 16}
             for s, m in (("WPlus", 0.006), ("FZPlus", 0.003)) for t in range(3)]
    append_rows(out / PER_IMAGE_CSV, recon, PER_IMAGE.fields)
    curves = [{"space": s, "target": str(t), "direction": "d0", "alpha": f"{a:.2f}", "identity": str(v + 0.01 * t),
               "codes_sha256": "0" * 16}
              for s, v in (("WPlus", 0.85), ("FZPlus", 0.95)) for t in range(3) for a in (-2.0, 2.0, 1.0)]
    write_rows(out / CURVES_CSV, curves, CURVES.fields)
    if calibrated:
        cal = IdentityCalibration("dlib-cosine", 3, 0.8, 0.02, 0.98, 0.01, 0.9, 0.0)
        (out / "identity_calibration.json").write_text(json.dumps(cal.as_dict()))


def test_tradeoff_points_of_a_comparison_folder(tmp_path):
    _run_folder(tmp_path, calibrated=True)
    points, x_label, y_label, note, kind = tradeoff_points(tmp_path, "mse", 2.0)
    by = {p.name: p for p in points}
    assert kind == "spaces" and list(by) == ["WPlus", "FZPlus"]
    assert by["FZPlus"].distortion == pytest.approx(0.003 * 2)          # mean of 0.003 x (1, 2, 3)
    assert by["FZPlus"].editability == pytest.approx((0.96 - 0.8) / 0.2)  # |alpha| = 2 rows only, calibrated
    assert "calibrated" in y_label and "impostor baseline 0.800" in note
    write_tradeoff(tmp_path)
    assert (tmp_path / "tradeoff.png").is_file() and (tmp_path / "tradeoff.pdf").is_file()
    with pytest.raises(ValueError, match="distortion"):
        tradeoff_points(tmp_path, "psnr")


def test_tradeoff_without_calibration_says_so_and_empty_folders_are_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    _run_folder(tmp_path / "raw", calibrated=False)
    points, _, y_label, note, _ = tradeoff_points(tmp_path / "raw", "mse", 2.0)
    assert points[1].editability == pytest.approx(0.96) and "raw cosine" in note and "calibrated" not in y_label
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither"):
        tradeoff_points(tmp_path / "empty")


def test_representative_target_is_the_median_face_not_target_zero():
    targets = torch.stack([torch.full((3, 4, 4), v) for v in (-0.9, -0.2, 0.0, 0.3, 0.8)])
    rows = [{"target": str(t), "mse": str(e)} for t, e in enumerate((0.05, 0.01, 0.02, 0.03, 0.04))]
    index, why = representative_target(targets, rows)
    assert index == 2 and "brightness and reconstruction error" in why
    index, why = representative_target(targets, [])
    assert index == 2 and why == "median brightness of the 5 targets"


def test_curve_rows_written_before_edit_sizes_still_summarise(tmp_path):
    """identity_curves.csv of an earlier version has no edit_change column: read, summarised without edit sizes."""
    from experiments.studies.identity_curves import summarize

    old_fields = [f for f in CURVES.fields if f != "edit_change"]
    rows = [{"space": "WPlus", "target": "0", "direction": "d0", "alpha": a, "identity": "0.9", "codes_sha256": ""}
            for a in ("-2.00", "0.00", "2.00")]
    write_rows(tmp_path / CURVES_CSV, rows, old_fields)
    read = read_rows(tmp_path / CURVES_CSV, CURVES)
    assert len(read) == 3 and read[0]["edit_change"] == ""
    (row,) = summarize(tmp_path, read, ["WPlus"])
    assert row["identity_at_2"] == pytest.approx(0.9) and not any(k.startswith("edit_change") for k in row)
