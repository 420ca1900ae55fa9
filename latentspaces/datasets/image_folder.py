"""A folder tree of image files as a training set: its index, and a map-style dataset over it.

- `index_images(root)`: the image files under `root` at any depth (IMAGE_SUFFIXES, hidden files and
  folders skipped, symlinked folders not followed so a link loop cannot hang the walk; a file link in a loop,
  a link to nothing and an unreadable subfolder are reported, not raised), as sorted
  POSIX paths relative to `root`. One `os.scandir` pass, no stat of each file: 70,000 files index in
  well under a second on a local disk (BENCHMARKS.md, "Training on a photo folder").
- `FolderIndex`: that list with its root, saved as JSON (`save` / `load`) so a run keeps the index it
  started with: the position in an epoch saved in a checkpoint refers to this list, not to whatever
  the folder holds when the run resumes.
- `ImageFolder`: a `torch.utils.data.Dataset` over an index. An item is (uint8 image [3, R, R], index
  read, files skipped): each file is read by the project's one image reader
  (`latentspaces.images.read_image`: EXIF orientation, transparency, 16-bit, square center crop,
  Lanczos resize to R) and, on request, flipped left-right. A file that cannot be read (truncated,
  not an image, gone since it was indexed) is skipped: the next file of the index is read in its place
  and the skipped one reported with its reason, so a damaged file costs one line in a list, never the
  run. Items are uint8 so worker processes send a quarter of the bytes float32 would take.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

from ..errors import CheckpointError
from ..images import IMAGE_SUFFIXES, read_image, to_uint8
from ..storage import PathLike, atomic_write_text

INDEX_FORMAT = "latentspaces.folder_index"   # the JSON file of `FolderIndex.save`
Skipped = Tuple[str, str]                    # (path relative to the root, why it was skipped)


def index_images(root: PathLike, skipped: Optional[List[Skipped]] = None) -> List[str]:
    """The image files under `root` (any depth), as sorted POSIX paths relative to it.

    Refuses a root that is not a folder, and a folder tree without image files (naming the suffixes
    looked for); reads no pixels. What the walk cannot use is appended to `skipped` as (path relative to
    the root, why), never raised: a subfolder it may not list, a link in a loop, a link to nothing.
    """
    top = Path(os.fspath(root))
    if not top.is_dir():
        raise FileNotFoundError(f"no folder at {top}" if not top.exists() else f"{top} is a file, not a folder")
    found: List[str] = []
    pending = [("", os.fspath(top))]
    while pending:
        prefix, folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:   # an unreadable subfolder: its images are not in the index, and it is said
            if folder == os.fspath(top):
                raise CheckpointError(f"{top}: cannot list the folder ({e.strerror})") from None
            _skip(skipped, prefix, f"cannot list the folder ({e.strerror or e})")
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((f"{prefix}{entry.name}/", entry.path))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                    if entry.is_file():
                        found.append(prefix + entry.name)
                    elif entry.is_symlink():
                        _skip(skipped, prefix + entry.name, "a link to no file")
            except OSError as e:   # a link in a loop (ELOOP), a file that vanished or may not be looked at
                why = "a symbolic link in a loop" if e.errno == errno.ELOOP else f"cannot be looked at ({e.strerror or e})"
                _skip(skipped, prefix + entry.name, why)
    if not found:
        raise CheckpointError(f"{top}: no image files in this folder or below (looked for "
                              f"{', '.join(IMAGE_SUFFIXES)})")
    found.sort()
    return found


def _skip(skipped: Optional[List[Skipped]], path: str, why: str) -> None:
    if skipped is not None:
        skipped.append((path, why))


@dataclass(frozen=True)
class FolderIndex:
    """The image files of one folder tree: `root` (absolute) and `files` (sorted, relative to it)."""

    root: str
    files: Tuple[str, ...]

    @staticmethod
    def build(root: PathLike, skipped: Optional[List[Skipped]] = None) -> "FolderIndex":
        """Index `root` now (see `index_images`; what the walk could not use is appended to `skipped`)."""
        return FolderIndex(str(Path(os.fspath(root)).resolve()), tuple(index_images(root, skipped)))

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return Path(self.root) / self.files[i]

    def subset(self, keep: Sequence[int]) -> "FolderIndex":
        """The index of files `keep` (positions in this index), in that order."""
        return FolderIndex(self.root, tuple(self.files[i] for i in keep))

    def save(self, path: PathLike) -> None:
        """Write the index as JSON, atomically."""
        atomic_write_text(path, json.dumps({"format": INDEX_FORMAT, "version": 1, "root": self.root,
                                            "files": list(self.files)}))

    @staticmethod
    def load(path: PathLike) -> "FolderIndex":
        """Read an index written by `save`; a file of another kind is a CheckpointError naming it."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: not a folder index ({type(e).__name__}: {e})") from None
        if not isinstance(raw, dict) or raw.get("format") != INDEX_FORMAT or raw.get("version") != 1:
            raise CheckpointError(f"{path}: not a folder index of format {INDEX_FORMAT} version 1")
        files = raw.get("files")
        if (not isinstance(raw.get("root"), str) or not isinstance(files, list) or not files
                or not all(isinstance(f, str) for f in files)):
            raise CheckpointError(f"{path}: a folder index needs a root and a non-empty list of file names")
        return FolderIndex(raw["root"], tuple(files))


class ImageFolder(torch.utils.data.Dataset):
    """Images of a `FolderIndex` at one resolution; an item is chosen by (index, flip).

    item -> (uint8 [3, R, R], index actually read, [(skipped file, reason), ...]).
    """

    def __init__(
        self,
        index: FolderIndex,       # the files, relative to index.root
        resolution: int,          # side R of the square images returned (center crop, Lanczos resize)
        max_skips: Optional[int] = None,   # damaged files tried past before giving up (None: the whole index)
    ):
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        self.index, self.resolution = index, resolution
        self.max_skips = len(index) if max_skips is None else max_skips

    def __len__(self) -> int:
        return len(self.index)

    def read(self, i: int) -> torch.Tensor:
        """File i as float32 [3, R, R] in [-1, 1] (errors raised, naming the file)."""
        return read_image(self.index.path(i), self.resolution)[0]

    def __getitem__(self, item: Tuple[int, bool]) -> Tuple[torch.Tensor, int, List[Skipped]]:
        i, flip = item
        skipped: List[Skipped] = []
        for k in range(self.max_skips + 1):
            j = (i + k) % len(self.index)
            try:
                x = self.read(j)
            except (CheckpointError, OSError) as e:
                skipped.append((self.index.files[j], str(e).replace(str(self.index.path(j)) + ": ", "")))
                if len(skipped) >= len(self.index):
                    break
                continue
            return to_uint8(x.flip(-1) if flip else x), j, skipped
        raise CheckpointError(f"{self.index.root}: no readable image among {len(skipped)} files tried from "
                              f"{self.index.files[i]} on (first: {skipped[0][0]}: {skipped[0][1]})")

    def first_readable(self, start: int = 0) -> int:
        """The position of the first file from `start` on that reads; a one-line error when none does."""
        return self[(start, False)][1]


def collate_items(items: Sequence[Tuple[torch.Tensor, int, List[Skipped]]]
                  ) -> Tuple[torch.Tensor, torch.Tensor, List[Skipped]]:
    """DataLoader collate of `ImageFolder` items: (uint8 [B, 3, R, R], indices read [B], skipped files)."""
    images = torch.stack([x for x, _, _ in items])
    read = torch.tensor([j for _, j, _ in items], dtype=torch.long)
    return images, read, [s for _, _, skipped in items for s in skipped]


__all__ = ["FolderIndex", "INDEX_FORMAT", "ImageFolder", "collate_items", "index_images"]
