"""The identity calibration of a run folder: measured once on the run's targets, kept beside the rows.

`folder_calibration(out, identity, targets)` returns the `IdentityCalibration` recorded in
OUT/identity_calibration.json when it was measured with the same metric on the same targets (their
pixel fingerprints), and otherwise measures it (`latentspaces.metrics.identity_calibration`) and
records it. Metrics that cannot return descriptors (not a `FaceEmbedder`) and runs without an identity
metric have none: the tables then show the raw similarity only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Tuple

import torch

from latentspaces.fingerprints import SHORT, digest, image_fingerprints
from latentspaces.interfaces import FaceEmbedder, IdentitySimilarity
from latentspaces.metrics.identity_calibration import IdentityCalibration, calibrate_identity
from latentspaces.storage import atomic_write_text


CALIBRATION_FILE = "identity_calibration.json"
CALIBRATED_FIELDS = ("identity_calibrated", "verified")   # derived per row from 'identity' (never stored)
CALIBRATED_COLUMNS = [("identity (cal.)", "identity_calibrated", ".3f", True), ("verified", "verified", ".0%", False)]


def calibrated_fields(similarity: float, calibration: IdentityCalibration) -> dict:
    """{'identity_calibrated': (s - impostor) / (1 - impostor), 'verified': 1.0 or 0.0} for one raw
    similarity (both NaN when it is NaN: a row scored without identity)."""
    if math.isnan(similarity):
        return {"identity_calibrated": "nan", "verified": "nan"}
    return {"identity_calibrated": f"{float(calibration.calibrate(similarity)):.6g}",
            "verified": "1" if calibration.verified(similarity) else "0"}


def _targets_key(targets: torch.Tensor) -> str:
    return digest("".join(image_fingerprints(targets)), length=SHORT)


def folder_calibration(out: Path, identity: Optional[IdentitySimilarity],
                       targets: torch.Tensor) -> Optional[IdentityCalibration]:
    """The calibration of `identity` on targets [N, 3, R, R] in [-1, 1], cached in OUT (None without one)."""
    if identity is None or not isinstance(identity, FaceEmbedder) or targets.shape[0] < 2:
        return None
    path, key = out / CALIBRATION_FILE, _targets_key(targets)
    recorded = _read(path)
    if recorded is not None and recorded[1] == key and recorded[0].metric == identity.name:
        return recorded[0]
    calibration = calibrate_identity(identity, targets)
    atomic_write_text(path, json.dumps({**calibration.as_dict(), "targets": key}, indent=1) + "\n")
    return calibration


def _read(path: Path) -> Optional[Tuple[IdentityCalibration, str]]:
    """(calibration, targets key) recorded at `path`; None when absent or unreadable (it is measured again)."""
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        return IdentityCalibration.from_dict(raw), str(raw.get("targets"))
    except (ValueError, TypeError, AttributeError):
        return None


def read_calibration(out: Path) -> Optional[IdentityCalibration]:
    """The calibration recorded in OUT, if any (for summaries written without the metric at hand)."""
    recorded = _read(out / CALIBRATION_FILE)
    return recorded[0] if recorded else None


__all__ = ["CALIBRATED_COLUMNS", "CALIBRATED_FIELDS", "CALIBRATION_FILE", "calibrated_fields", "folder_calibration",
           "read_calibration"]
