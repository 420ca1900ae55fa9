"""Identity on a scale anchored by the data: impostor baseline, calibrated score, verification rate.

A face descriptor's cosine similarity is compressed and has no zero: on the default 64 px domain two
*different* held-out faces score about 0.88 with dlib, so a raw 0.905 is barely above "another
person". `calibrate_identity(identity, targets)` measures, on the target set itself,

- the impostor baseline: the mean similarity over all pairs of different targets;
- genuine scores: each target against mild augmentations of itself (`AUGMENTATIONS`: horizontal flip,
  shifts by 1 and 2 px with edge replication, JPEG at quality 90), the variation a same-image match
  must tolerate;
- the equal-error threshold between the two score sets (scikit-learn's ROC curve) and its EER (when
  every genuine score beats every impostor score, the EER is 0 and the threshold the midpoint between
  the highest impostor and the lowest genuine score).

`IdentityCalibration.calibrate(s)` = (s - impostor) / (1 - impostor): 0 is "another person of this
set" on average, 1 is "the same image", negative is less alike than the average impostor.
`verified(s)`: s at or above the threshold (the same-person decision at the EER).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..images import from_uint8, to_uint8
from ..interfaces import FaceEmbedder

JPEG_QUALITY = 90


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate images [N, C, H, W] by (dx, dy) pixels, replicating the edge into the uncovered border."""
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))
    padded = F.pad(x, pad, mode="replicate")
    h, w = x.shape[-2:]
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


def _jpeg(x: torch.Tensor, quality: int = JPEG_QUALITY) -> torch.Tensor:
    """JPEG round trip (Pillow, 4:2:0 chroma) of images in [-1, 1]."""
    out = []
    for img in to_uint8(x).permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        out.append(torch.from_numpy(np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))))
    return from_uint8(torch.stack(out).permute(0, 3, 1, 2).contiguous())


AUGMENTATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "flip": lambda x: x.flip(-1),
    "shift 1 px": lambda x: _shift(x, 1, 1),
    "shift 2 px": lambda x: _shift(x, -2, 2),
    f"jpeg q{JPEG_QUALITY}": _jpeg,
}


@dataclass(frozen=True)
class IdentityCalibration:
    """Where an identity metric's scores lie on one target set (see the module docstring)."""

    metric: str                 # the identity metric's name
    n_targets: int              # targets the baseline was measured on
    impostor: float             # mean similarity over pairs of different targets
    impostor_std: float
    genuine: float              # mean similarity of a target and its augmentations
    genuine_std: float
    threshold: float            # equal-error threshold between genuine and impostor scores
    eer: float                  # equal-error rate at that threshold, in [0, 1]
    augmentations: Tuple[str, ...] = tuple(AUGMENTATIONS)

    def calibrate(self, similarity: torch.Tensor) -> torch.Tensor:
        """(s - impostor) / (1 - impostor): 0 for the average impostor, 1 for the same image."""
        return (similarity - self.impostor) / (1 - self.impostor)

    def verified(self, similarity: torch.Tensor) -> torch.Tensor:
        """True where s reaches the equal-error threshold (the same-person decision)."""
        return similarity >= self.threshold

    def describe(self) -> str:
        """One line for tables: what the calibrated column and the verification rate mean."""
        return (f"identity ({self.metric}) calibrated on {self.n_targets} targets: impostor baseline "
                f"{self.impostor:.3f} ± {self.impostor_std:.3f} (different targets) -> 0, the same image -> 1; "
                f"verified: similarity >= {self.threshold:.3f}, the equal-error threshold between genuine "
                f"pairs ({', '.join(self.augmentations)}; mean {self.genuine:.3f}) and impostor pairs "
                f"(EER {100 * self.eer:.1f}%)")

    def as_dict(self) -> Dict[str, object]:
        """JSON-able fields (`from_dict` reads them back)."""
        return {**asdict(self), "augmentations": list(self.augmentations)}

    @staticmethod
    def from_dict(raw: Dict[str, object]) -> "IdentityCalibration":
        """The calibration of `as_dict` output; ValueError naming what is missing or wrong."""
        names = set(IdentityCalibration.__dataclass_fields__)
        missing = sorted(names - set(raw))
        if missing:
            raise ValueError(f"identity calibration lacks {missing}")
        fields = {k: raw[k] for k in names}
        fields["augmentations"] = tuple(fields["augmentations"])
        return IdentityCalibration(**fields)


def equal_error(genuine: np.ndarray, impostor: np.ndarray) -> Tuple[float, float]:
    """(threshold, EER) where the false-accept and false-reject rates meet (scikit-learn's ROC curve)."""
    labels = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    from sklearn.metrics import roc_curve   # imported on use: sklearn costs ~1.3 s at start-up

    fpr, tpr, thresholds = roc_curve(labels, np.r_[genuine, impostor])
    fnr = 1 - tpr
    if impostor.max() < genuine.min():  # separable: EER 0 anywhere between them; take the middle
        return float((impostor.max() + genuine.min()) / 2), 0.0
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    threshold = float(thresholds[i]) if math.isfinite(thresholds[i]) else float(np.max(genuine))
    return threshold, float((fpr[i] + fnr[i]) / 2)


@torch.no_grad()
def calibrate_identity(identity: FaceEmbedder, targets: torch.Tensor) -> IdentityCalibration:
    """Measure impostor and genuine similarities of `identity` on targets [N, 3, R, R] in [-1, 1] (N >= 2).

    identity: a `FaceEmbedder` (dlib, facenet): its similarity is the cosine of its descriptors, so every
    pair of the set is scored from one embedding per image.
    """
    if targets.ndim != 4 or targets.shape[0] < 2:
        raise ValueError(f"calibration needs at least 2 targets [N, 3, R, R], got {tuple(targets.shape)}")
    targets = targets.detach().float().cpu()
    base = F.normalize(identity.embed(targets).float(), dim=1)
    sim = base @ base.T
    upper = torch.triu_indices(len(targets), len(targets), offset=1)
    impostor = sim[upper[0], upper[1]].numpy()
    genuine = np.concatenate([
        (F.normalize(identity.embed(augment(targets)).float(), dim=1) * base).sum(1).numpy()
        for augment in AUGMENTATIONS.values()])
    threshold, eer = equal_error(genuine, impostor)
    return IdentityCalibration(metric=identity.name, n_targets=len(targets),
                               impostor=float(impostor.mean()), impostor_std=float(impostor.std()),
                               genuine=float(genuine.mean()), genuine_std=float(genuine.std()),
                               threshold=threshold, eer=eer)


__all__ = ["AUGMENTATIONS", "IdentityCalibration", "calibrate_identity", "equal_error"]
