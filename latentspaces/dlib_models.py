"""dlib and the model files of the `face-recognition-models` wheel, located offline.

The wheel ships dlib's trained models in its `models/` folder: the 5- and 68-point landmark predictors
(`shape_predictor_5_face_landmarks.dat`, `shape_predictor_68_face_landmarks.dat`), the CNN face
detector (`mmod_human_face_detector.dat`) and the face descriptor network
(`dlib_face_recognition_resnet_model_v1.dat`). The package is found with importlib and never imported
(its `__init__` imports pkg_resources, which we avoid); nothing is ever downloaded. Used by the identity
metric (`latentspaces.metrics.identity`) and the face alignment (`latentspaces.align`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from .errors import MissingWeightsError

INSTALL = "`pip install dlib-bin face-recognition-models`"


def models_dir(instead: str) -> Path:
    """The `models/` folder of the installed face-recognition-models package.

    instead: what the caller can do without it (ends the error message).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingWeightsError(
            "dlib face models not found: the package 'face-recognition-models' is not installed "
            f"(looked for it with importlib in this Python's site-packages). Install it with {INSTALL}, "
            f"or {instead}")
    return Path(spec.origin).parent / "models"


def model_path(name: str, instead: str) -> Path:
    """The path of one model file of the wheel; MissingWeightsError naming it and where it was looked for."""
    path = models_dir(instead) / name
    if not path.is_file():
        raise MissingWeightsError(
            f"dlib model {name} not found at {path} (face-recognition-models' models folder); reinstall the wheel "
            f"with `pip install --force-reinstall face-recognition-models`, or {instead}")
    return path


def import_dlib(purpose: str) -> ModuleType:
    """The dlib module; ImportError saying what needs it and how to install it."""
    try:
        import dlib
    except ImportError as e:
        raise ImportError(f"{purpose} needs dlib: {INSTALL}") from e
    return dlib


__all__ = ["INSTALL", "import_dlib", "model_path", "models_dir"]
