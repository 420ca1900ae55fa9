"""Calibrated identity: the impostor baseline, the equal-error threshold, and the tables that report them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.studies.calibration import CALIBRATION_FILE, calibrated_fields, folder_calibration
from latentspaces.interfaces import FaceEmbedder
from latentspaces.metrics.identity_calibration import (AUGMENTATIONS, IdentityCalibration, calibrate_identity,
                                                       equal_error)


class PixelEmbedder:
    """A stand-in face embedder: the 8x8 average-pooled image (its cosine is a similarity in [-1, 1])."""

    name = "pixels"

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return F.adaptive_avg_pool2d(images.float(), 8).flatten(1)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(self.embed(x), self.embed(y), dim=1)


def _targets(n: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(n, 3, 8, 8, generator=gen) * 2 - 1, size=32, mode="bilinear")
    return smooth.clamp(-1, 1)


def test_equal_error_threshold_against_a_brute_force_sweep():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(0.9, 0.03, 400), rng.normal(0.8, 0.04, 900)
    threshold, eer = equal_error(genuine, impostor)
    far = np.mean(impostor >= threshold)
    frr = np.mean(genuine < threshold)
    assert abs(far - frr) < 0.01 and abs(eer - (far + frr) / 2) < 0.01
    # brute force over a fine grid: no threshold balances the two rates better
    grid = np.linspace(0.6, 1.0, 4001)
    gaps = [abs(np.mean(impostor >= t) - np.mean(genuine < t)) for t in grid]
    assert abs(far - frr) <= min(gaps) + 2 / 400
    # separable scores: EER 0, threshold halfway between the closest genuine and impostor scores
    assert equal_error(np.array([0.95, 0.97]), np.array([0.80, 0.85])) == (pytest.approx(0.9), 0.0)


def test_calibration_on_a_target_set():
    identity, targets = PixelEmbedder(), _targets()
    assert isinstance(identity, FaceEmbedder)
    cal = calibrate_identity(identity, targets)
    emb = F.normalize(identity.embed(targets), dim=1)
    sim = (emb @ emb.T).double()
    pairs = [float(sim[i, j]) for i in range(6) for j in range(i + 1, 6)]
    assert cal.impostor == pytest.approx(np.mean(pairs), abs=1e-6) and cal.n_targets == 6
    assert cal.augmentations == tuple(AUGMENTATIONS)
    # the scale: the average impostor -> 0, the same image -> 1, linear in between
    assert float(cal.calibrate(torch.tensor(cal.impostor))) == pytest.approx(0.0, abs=1e-7)
    assert float(cal.calibrate(torch.tensor(1.0))) == pytest.approx(1.0)
    assert bool(cal.verified(torch.tensor(1.0))) and not bool(cal.verified(torch.tensor(cal.impostor)))
    assert IdentityCalibration.from_dict(json.loads(json.dumps(cal.as_dict()))) == cal
    with pytest.raises(ValueError, match="lacks"):
        IdentityCalibration.from_dict({"metric": "x"})
    assert calibrated_fields(float("nan"), cal) == {"identity_calibrated": "nan", "verified": "nan"}


def test_augmentations_are_mild_and_keep_the_shape():
    x = _targets(2)
    for name, augment in AUGMENTATIONS.items():
        y = augment(x)
        assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1, name
        assert 0 < float((y - x).abs().mean()) < 0.5, name


def test_folder_calibration_is_measured_once_per_metric_and_target_set(tmp_path):
    identity, targets = PixelEmbedder(), _targets()
    first = folder_calibration(tmp_path, identity, targets)
    calls = identity.calls
    assert folder_calibration(tmp_path, identity, targets) == first and identity.calls == calls  # read back
    other = folder_calibration(tmp_path, identity, _targets(seed=1))   # other targets: measured again
    assert other != first and identity.calls > calls
    (tmp_path / CALIBRATION_FILE).write_text("{garbled")
    assert folder_calibration(tmp_path, identity, targets) == first    # unreadable: measured again
    assert folder_calibration(tmp_path, None, targets) is None
    assert folder_calibration(tmp_path, lambda x, y: x, targets) is None  # not a FaceEmbedder: raw only


def test_comparison_table_gains_calibrated_columns_and_states_the_baseline(tmp_path):
    from experiments.runs import append_rows
    from experiments.studies import space_comparison
    from experiments.studies.inversions import PER_IMAGE, PER_IMAGE_CSV

    cal = IdentityCalibration(metric="pixels", n_targets=4, impostor=0.8, impostor_std=0.02, genuine=0.98,
                              genuine_std=0.01, threshold=0.9, eer=0.05)
    sims = {"W": [0.85, 0.95], "FZPlus": [0.96, float("nan")]}
    rows = [{**{f: "0.5" for f in PER_IMAGE.fields}, "space": space, "target": str(i), "identity": str(s),
             "codes_sha256": "0" * 16} for space, values in sims.items() for i, s in enumerate(values)]
    append_rows(tmp_path / PER_IMAGE_CSV, rows, PER_IMAGE.fields)
    summary = {r["space"]: r for r in space_comparison.summarize(tmp_path, ["W", "FZPlus"], None, cal)}
    assert summary["W"]["identity_calibrated"] == pytest.approx(((0.85 - 0.8) + (0.95 - 0.8)) / 2 / 0.2)
    assert summary["W"]["verified"] == pytest.approx(0.5)
    table = (tmp_path / "space_comparison.md").read_text()
    assert "| identity (cal.) | verified |" in table and "impostor baseline 0.800" in table
    plain = {r["space"]: r for r in space_comparison.summarize(tmp_path, ["W"], None, None)}
    assert "identity_calibrated" not in plain["W"] and "impostor" not in (tmp_path / "space_comparison.md").read_text()
