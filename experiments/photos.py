"""Photographs in and out of the commands: faces aligned into a folder, edited faces pasted back into photos.

The folder convention, shared by `latentspaces align`, `invert --align` and `edit --paste-back`:

- each face of PHOTO is written as OUT/<photo stem>_<face>.png (face 0 the most confident: every detection
  is examined by its landmarks, `latentspaces.align.FaceAligner.candidates`, and a face-like thing the
  detector scored, such as a patch on a suit, is dropped and reported), and its transform
  (`latentspaces.align.FaceTransform`: the photo's absolute path, the square in the photo, the FFHQ steps,
  whether the photo is grayscale) under that file name in OUT/alignment.json
  (`latentspaces.align.save_alignment`, which also lists every candidate with its verdict). A rerun
  into OUT replaces the entries of the photos it aligns and keeps the others; a second photo with the
  stem of one already there is refused, since its faces would overwrite the other's files.
- `invert` records the names of its target files in the code file (meta `targets`), so a code is tied
  to its aligned face by name: `edit --paste-back` looks each code's target up in the alignment file
  (--alignment, or alignment.json beside the codes), reads the photo the entry names and writes
  OUT/<photo stem>_<direction>_<alpha>.png, the whole photo with every inverted face of it edited.

Memory per photo: the decoded photo once, plus buffers the size of a face's square; the photo is not
copied per alpha: the squares' pixels are kept, pasted over, the photo saved, the squares restored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image

from latentspaces.align import FaceAligner, FaceTransform, load_alignment, load_candidates, paste_back_, save_alignment
from latentspaces.errors import CheckpointError, FaceNotFoundError
from latentspaces.images import is_gray, read_photo, to_uint8
from latentspaces.progress import progress_bar
from latentspaces.storage import atomic_path

from .argtypes import UsageError

ALIGNMENT_FILE = "alignment.json"


def aligned_name(photo: Path, face: int) -> str:
    """The file name of a photo's aligned face: <stem>_<face>.png."""
    return f"{photo.stem}_{face}.png"


def check_photos(photos: Sequence[Path], out: Path) -> None:
    """Refuse photos whose aligned files would collide: two with one stem, or a stem OUT already holds for
    another photo (its alignment.json says which)."""
    seen: Dict[str, Path] = {}
    for p in photos:
        if p.stem in seen:
            if seen[p.stem].resolve() == p.resolve():
                raise UsageError(f"{p} is named twice (a file and its folder?)")
            raise UsageError(f"{seen[p.stem]} and {p} would both write {p.stem}_0.png ...; rename one, or align them "
                             "into different --out folders")
        seen[p.stem] = p
    existing = out / ALIGNMENT_FILE
    if not existing.is_file():
        return
    try:
        known = load_alignment(existing)
    except (CheckpointError, OSError) as e:
        raise UsageError(f"{existing} cannot be updated: {e}") from None
    for name, t in known.items():
        stem = name.rsplit("_", 1)[0]
        if stem in seen and t.photo and Path(t.photo) != seen[stem].resolve():
            raise UsageError(f"{out} already holds {name}, a face of {t.photo}; {seen[stem]} would overwrite it "
                             "(rename the photo, or use another --out)")


def _save_png(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="png")


def save_face(face: torch.Tensor, path: Path) -> None:
    """An aligned face [3, S, S] in [-1, 1] as a PNG, atomically."""
    _save_png(Image.fromarray(to_uint8(face).permute(1, 2, 0).numpy(), "RGB"), path)


def align_photos(photos: Sequence[Path], out: Path, aligner: FaceAligner, keep_going: bool = False,
                 face: Optional[int] = None) -> Tuple[List[str], List[str]]:
    """Align every face of every photo into OUT -> (the aligned file names written, failures).

    Each photo's candidates are printed (box, detector score, landmark check, verdict) and its faces written
    as they are found; OUT/alignment.json (entries of other photos kept) when the loop ends, also when it ends
    in an error. face: write only face K of each photo (K = its rank, 0 the most confident). keep_going: a
    photo without a face, or one that cannot be read, is reported in `failures` (one line each) and the next
    one aligned; otherwise its error is raised.
    """
    entries: List[Tuple[str, FaceTransform]] = []
    candidates: List[dict] = []
    failures: List[str] = []
    written: List[str] = []
    try:
        for p in progress_bar(photos, desc="align", unit="photo", disable=len(photos) < 2):
            try:
                found = aligner.search_file(p, verbose=True)
                if face is not None and face >= len(found.faces):
                    raise FaceNotFoundError(f"{p}: --face {face}, but the photo has {len(found.faces)} face"
                                            f"{'s' if len(found.faces) != 1 else ''} (0 .. {len(found.faces) - 1})")
            except (FaceNotFoundError, CheckpointError, OSError) as e:
                if not keep_going:
                    raise
                failures.append(str(e))
                continue
            out.mkdir(parents=True, exist_ok=True)
            faces = found.faces if face is None else [found.faces[face]]
            names = [aligned_name(p, f.transform.face) for f in faces]
            for name, f in zip(names, faces):
                save_face(f.image, out / name)
                entries.append((name, f.transform))
            photo = str(Path(p).resolve())
            candidates += [{"photo": photo, **c.to_json()} for c in found.candidates]
            written += names
            gray = " (grayscale: edits pasted back into it are made gray)" if found.gray else ""
            print(f"{p}: {len(found.faces)} face{'s' if len(found.faces) != 1 else ''}, {len(found.dropped)} "
                  f"dropped{gray} -> {', '.join(names)}")
            for rank, c in enumerate(found.candidates):   # the kept ones come first: their index is their rank
                label = aligned_name(p, rank) if c.kept and (face is None or face == rank) else ""
                print(f"  {label + ': ' if label else ''}{c.describe()}")
    finally:
        if entries:
            path = out / ALIGNMENT_FILE
            aligned = {t.photo for _, t in entries}
            if path.is_file():   # keep the faces of the other photos aligned into OUT before
                entries = [(n, t) for n, t in load_alignment(path).items() if t.photo not in aligned] + entries
                candidates = [c for c in load_candidates(path) if c.get("photo") not in aligned] + candidates
            save_alignment(path, entries, candidates)
    return written, failures


def alignment_for(codes: Path, alignment: Optional[Path]) -> Path:
    """The alignment file of --paste-back: --alignment, or alignment.json beside the code file."""
    path = alignment if alignment is not None else codes.parent / ALIGNMENT_FILE
    if not path.is_file():
        raise UsageError(f"--paste-back needs the alignment of the codes' faces: no {ALIGNMENT_FILE} beside "
                         f"{codes}; pass --alignment FILE (written by `latentspaces align` or `invert --align`)")
    return path


def code_transforms(targets: object, codes: Path, alignment_file: Path) -> List[FaceTransform]:
    """The transform of each code, found by its target file's name in the alignment file."""
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise UsageError(f"{codes} does not record its target files (inverted from the held-out set, or before "
                         "targets were recorded); --paste-back edits codes of aligned photos: `latentspaces invert "
                         "--targets ALIGNED.png` or `invert --align --targets PHOTO`")
    known = load_alignment(alignment_file)
    out = []
    for t in targets:
        name = Path(t).name
        if name not in known:
            raise UsageError(f"{codes}: target {name} is not in {alignment_file} (it holds "
                             f"{', '.join(known) or 'no faces'})")
        out.append(known[name])
    return out


def paste_edits(out: Path, transforms: Sequence[FaceTransform], images: torch.Tensor, alphas: Sequence[float],
                direction: str, mask: str) -> List[Path]:
    """Write OUT/<photo stem>_<direction>_<alpha>.png for each photo and alpha: the photo with each of its faces
    replaced by its edit. images: [N, A, 3, R, R] in [-1, 1], code i's edits at the alphas. A grayscale photo
    (its three channels equal) is written gray, edits included: the generator renders colour, and a coloured
    face in a gray photo is not what was asked for (a note says so)."""
    groups: Dict[str, List[int]] = {}
    for i, t in enumerate(transforms):
        if not t.photo:
            raise UsageError(f"face {i}'s alignment entry names no photo file; align the photo with `latentspaces "
                             "align` to paste back")
        groups.setdefault(t.photo, []).append(i)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for photo_path, members in groups.items():
        if not Path(photo_path).is_file():
            raise FileNotFoundError(f"the photo of the aligned faces, {photo_path}, is gone (moved or deleted); "
                                    "align it again where it is now")
        photo, _ = read_photo(photo_path)
        gray = is_gray(photo)
        if gray:
            print(f"note: {photo_path} is grayscale; the edited faces are pasted back gray (ITU-R 601 luma)")
        boxes = [b for b in (transforms[i].bounds() for i in members) if b is not None]
        for a, alpha in enumerate(alphas):
            kept = [(b, photo.crop(b)) for b in boxes]
            for i in sorted(members, key=lambda i: -transforms[i].face):   # the largest face last, on top
                paste_back_(photo, images[i, a], transforms[i], mask=mask)
            path = out / f"{Path(photo_path).stem}_{direction}_{alpha:+g}.png"
            _save_png(photo.convert("L") if gray else photo, path)
            written.append(path)
            for b, pixels in reversed(kept):
                photo.paste(pixels, b[:2])
    return written


__all__ = ["ALIGNMENT_FILE", "align_photos", "aligned_name", "alignment_for", "check_photos", "code_transforms",
           "paste_edits", "save_face"]
