"""The alignment file: the transforms of aligned faces, each under its aligned image's file name, in JSON
(`save_alignment`, `load_alignment`; format `ALIGNMENT_FORMAT`, version 1), and every candidate the
detector reported in each photo with its verdict (`load_candidates`: kept faces and dropped non-faces).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..errors import CheckpointError
from ..storage import PathLike, atomic_write_text
from .transform import FaceTransform

ALIGNMENT_FORMAT = "latentspaces.alignment"   # the JSON file of `save_alignment`


def save_alignment(path: PathLike, faces: Sequence[Tuple[str, FaceTransform]],
                   candidates: Sequence[dict] = ()) -> None:
    """Write (aligned image file name, transform) pairs to a JSON file, atomically, with the detector's
    candidates ({photo, box, score, landmark_shift, confidence, verdict, reason} each; `Candidate.to_json`)."""
    names = [name for name, _ in faces]
    if len(set(names)) != len(names):
        raise ValueError(f"aligned file names must be distinct, got {names}")
    doc = {"format": ALIGNMENT_FORMAT, "version": 1,
           "faces": [dict(file=name, **t.to_json()) for name, t in faces], "candidates": list(candidates)}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def load_candidates(path: PathLike) -> List[dict]:
    """The candidates recorded in an alignment file ([] for files written before they were)."""
    entries = _read(os.fspath(path)).get("candidates", [])
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _read(path: str) -> dict:
    """The checked top level of an alignment file: JSON, its format and version."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no alignment file at {path}")
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: not a JSON alignment file ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(doc, dict) or doc.get("format") != ALIGNMENT_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(f"{path}: not a latentspaces alignment file (format {got!r}, expected "
                              f"{ALIGNMENT_FORMAT!r}; `latentspaces align` writes them)")
    if doc.get("version") != 1:
        raise CheckpointError(f"{path}: alignment file version {doc.get('version')!r}; this version reads 1")
    return doc


def load_alignment(path: PathLike) -> Dict[str, FaceTransform]:
    """The {aligned image file name: transform} of a file written by `save_alignment`, in its order.

    A relative `photo` path is read relative to the alignment file's folder, so a folder holding the photo,
    its aligned faces and alignment.json can be moved whole (the editor's replay bundle is one)."""
    path = os.fspath(path)
    entries = _read(path).get("faces")
    if not isinstance(entries, list):
        raise CheckpointError(f"{path}: 'faces' must be a list")
    out: Dict[str, FaceTransform] = {}
    for i, entry in enumerate(entries):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{path}: face {i} has no aligned file name ('file')")
        if name in out:
            raise CheckpointError(f"{path}: {name} is listed twice")
        t = FaceTransform.from_json({k: v for k, v in entry.items() if k != "file"}, f"{path}, {name}")
        if t.photo and not os.path.isabs(t.photo):
            t = replace(t, photo=str(Path(path).resolve().parent / t.photo))
        out[name] = t
    return out


__all__ = ["ALIGNMENT_FORMAT", "load_alignment", "load_candidates", "save_alignment"]
