"""The quality report's Frechet distance against closed-form Gaussian values."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.tools.quality_report import frechet_distance, frechet_distance_from_stats, gaussian_stats


def _closed_form_diagonal(mu1, var1, mu2, var2) -> float:
    """FD of two Gaussians with diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt(s1) - sqrt(s2))^2."""
    mu1, var1, mu2, var2 = (np.asarray(a, np.float64) for a in (mu1, var1, mu2, var2))
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))


def test_fd_from_stats_matches_closed_form_diagonal():
    rng = np.random.default_rng(0)
    d = 128
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 0.5 + 0.1
    var1, var2 = rng.uniform(0.01, 2.0, size=d), rng.uniform(0.01, 2.0, size=d)
    expected = _closed_form_diagonal(mu1, var1, mu2, var2)
    got = frechet_distance_from_stats(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)
    # Symmetric, zero for identical Gaussians, and only the mean term for equal covariances.
    assert frechet_distance_from_stats(mu2, np.diag(var2), mu1, np.diag(var1)) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance_from_stats(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_from_stats(mu1, np.diag(var1), mu2, np.diag(var1)) == pytest.approx(
        float(np.sum((mu1 - mu2) ** 2)), rel=1e-10)


def test_fd_from_stats_rotation_invariant():
    """A common rotation of both full covariances (and means) leaves FD unchanged: the sqrtm path, not a
    diagonal shortcut, is what is being tested."""
    rng = np.random.default_rng(1)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    got = frechet_distance_from_stats(q @ mu1, q @ np.diag(var1) @ q.T, q @ mu2, q @ np.diag(var2) @ q.T)
    assert got == pytest.approx(_closed_form_diagonal(mu1, var1, mu2, var2), rel=1e-8)


def test_fd_of_samples_approaches_closed_form():
    rng = np.random.default_rng(2)
    d, n = 8, 200_000
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    var1, var2 = np.linspace(0.5, 2.0, d), np.linspace(2.0, 0.25, d)
    x = (rng.normal(size=(n, d)) * np.sqrt(var1) + mu1).astype(np.float32)  # float32 in, float64 inside
    y = rng.normal(size=(n, d)) * np.sqrt(var2) + mu2
    expected = _closed_form_diagonal(mu1, var1, mu2, var2)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.02)
    mu, cov = gaussian_stats(x)
    assert mu.dtype == np.float64 and cov.shape == (d, d)


def test_fd_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance_from_stats(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3)))
