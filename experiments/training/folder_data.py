"""A photo folder as a trainer's data: its index kept with the run, held-out images split off, batches
from worker processes, sharded over the ranks, resumed at the exact batch.

    latentspaces train sdic --out runs/sdic --data ~/ffhq --loader-workers 8 --flip

- **Index**: the folder is indexed once (`latentspaces.datasets.index_images`) and the index written to
  OUT/data_index.json (and the held-out part to OUT/val_index.json); a resumed run reads them back, so
  the position in an epoch saved in its checkpoint means the same files. A run resumed with another
  --data folder is refused.
- **Held-out images**: `--val DIR` (another folder), or `--val-split F` (a share F of --data's files,
  chosen by a fixed seed, never trained on), or by default `--heldout-images` files of --data held out
  the same way. The snapshots score the first `--heldout-images` readable ones.
- **Epochs**: every epoch is one permutation of the training files (`DistributedSampler`, seed
  --seed, epoch number added), cut into one slice per rank with the tail dropped so no two ranks read
  the same file in one epoch, then into full batches of this rank's share. `--flip` mirrors a file
  left-right with probability 1/2, drawn per (epoch, file) from the same seed, so a resumed run and
  an uninterrupted one see the same pixels.
- **Resume**: the checkpoint holds (epoch, batches consumed in it) (`FolderStream.state_dict`); the
  loader restarts at that batch. Batches the workers had prefetched but the trainer had not used are
  read again, not lost.
- **Damaged files**: skipped by the dataset (the next file is read instead), listed once per run in
  OUT/skipped_images.csv with the reason, and one line printed; a folder with no readable file is a
  one-line error before training starts.
- `--align`: the photos are aligned first with the FFHQ procedure (`latentspaces.align.FaceAligner`,
  dlib) into OUT/aligned/ at the generator's resolution, every face of every photo, and
  OUT/aligned/manifest.json lists per photo the faces written or why it was skipped (--val images are
  taken as they are: already aligned). The pass resumes
  where it stopped (photos already in the manifest are not aligned again); under torchrun rank 0
  aligns while the others wait.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from experiments.distributed import World
from experiments.rows import append_rows, read_rows
from latentspaces.datasets.image_folder import FolderIndex, ImageFolder, Skipped, collate_items
from latentspaces.errors import CheckpointError, FaceNotFoundError
from latentspaces.images import MAX_IMAGE_PIXELS, READ_FORMATS, from_uint8
from latentspaces.progress import progress_bar
from latentspaces.storage import atomic_write_text

DATA_INDEX = "data_index.json"          # the training files of a run (written at its start)
VAL_INDEX = "val_index.json"            # its held-out files, when split off --data
SKIPPED_FILE = "skipped_images.csv"     # files skipped as unreadable: file, reason
SKIPPED_FIELDS = ("file", "reason")
ALIGNED_FOLDER = "aligned"              # --align's faces, inside OUT
MANIFEST = "manifest.json"              # what --align made of each photo
MANIFEST_FORMAT = "latentspaces.aligned_folder"
VAL_SEED = 20_231_127                   # the held-out split's permutation: fixed, so every --seed holds out the same files
FLIP_SALT = 7_919                       # the flip draws' seed is --seed * FLIP_SALT + epoch (distinct from the order's)


def _opens_as_image(path: Path) -> bool:
    """Whether Pillow reads an image header in `path` (no pixels decoded): an empty or foreign file does not."""
    try:
        with Image.open(path, formats=READ_FORMATS) as img:
            return 0 < img.size[0] * img.size[1] <= MAX_IMAGE_PIXELS
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def split_heldout(index: FolderIndex, count: int) -> Tuple[FolderIndex, FolderIndex]:
    """(training files, held-out files): `count` files of `index` whose header reads as an image, in the order of a
    fixed-seed permutation (an empty or foreign file is passed over, never held out), the rest in index order.
    At least one file must remain to train on."""
    if not 1 <= count < len(index):
        raise SystemExit(f"{index.root}: {len(index)} image file(s) cannot give {count} held-out and at least one "
                         "training image; pass a smaller --val-split / --heldout-images, or --val DIR")
    order = torch.randperm(len(index), generator=torch.Generator().manual_seed(VAL_SEED)).tolist()
    held: List[int] = []
    for i in order[:-1]:   # the permutation's last file is never held out: one remains to train on
        if len(held) == count:
            break
        if _opens_as_image(index.path(i)):
            held.append(i)
    if not held:
        raise SystemExit(f"{index.root}: none of its {len(index)} image file(s) opens as an image")
    held.sort()
    held_set = set(held)
    return index.subset([i for i in range(len(index)) if i not in held_set]), index.subset(held)


def report_walk(root: str, skipped: List[Skipped], log: Optional[Path]) -> None:
    """Say what the index walk of `root` could not use (a link loop, an unreadable folder, ...): one line each,
    at most 10 printed, all recorded in `log` (OUT/skipped_images.csv) beside the damaged files."""
    for rel, why in skipped[:10]:
        print(f"skipped {Path(root) / rel}: {why}")
    if len(skipped) > 10:
        print(f"... and {len(skipped) - 10} more skipped (listed in {log})")
    if skipped and log is not None:
        append_rows(log, [{"file": rel, "reason": why} for rel, why in skipped], SKIPPED_FIELDS)


def read_heldout(index: FolderIndex, resolution: int, n: int) -> torch.Tensor:
    """The first `n` readable images of `index` (in its order) as float32 [m, 3, R, R], m <= n; unreadable
    files are skipped with a printed line, and no readable file at all is a one-line error."""
    data = ImageFolder(index, resolution)
    images, i = [], 0
    while len(images) < n and i < len(index):
        try:
            images.append(data.read(i))
        except (CheckpointError, OSError) as e:
            print(f"held-out image skipped: {e}")
        i += 1
    if not images:
        raise SystemExit(f"{index.root}: none of its {len(index)} image file(s) can be read as a held-out image")
    return torch.stack(images)


class EpochBatches(Sampler):
    """This rank's batches of one epoch, from batch `start` on: lists of (file position, flip)."""

    def __init__(self, n: int, batch: int, world: World, seed: int, flip: bool):
        self.order = DistributedSampler(range(n), num_replicas=world.size, rank=world.rank, shuffle=True,
                                        seed=seed, drop_last=True)
        self.n, self.batch, self.seed, self.flip = n, batch, seed, flip
        self.epoch = 0     # set by FolderStream before each iteration
        self.start = 0     # first batch of the epoch to yield
        if self.per_epoch < 1:
            raise SystemExit(f"{n} training image(s) over {world.size} process(es) do not fill one batch of {batch} "
                             "per process; add images or lower --batch")

    @property
    def per_epoch(self) -> int:
        """Full batches per epoch on each rank."""
        return len(self.order) // self.batch

    def flips(self) -> torch.Tensor:
        """[n] bool: whether each file is mirrored this epoch (all False without --flip)."""
        if not self.flip:
            return torch.zeros(self.n, dtype=torch.bool)
        gen = torch.Generator().manual_seed(self.seed * FLIP_SALT + self.epoch)
        return torch.rand(self.n, generator=gen) < 0.5

    def __iter__(self) -> Iterator[List[Tuple[int, bool]]]:
        self.order.set_epoch(self.epoch)
        order, flips = list(self.order), self.flips()
        for b in range(self.start, self.per_epoch):
            yield [(i, bool(flips[i])) for i in order[b * self.batch:(b + 1) * self.batch]]

    def __len__(self) -> int:
        return self.per_epoch - self.start


class FolderStream:
    """Endless batches of one rank from an `ImageFolder`, with a resumable position (see the module docstring)."""

    def __init__(
        self,
        dataset: ImageFolder,          # the training files
        batch: int,                    # images per batch on this rank
        world: World,                  # this process among the ranks (its share of every epoch)
        seed: int,                     # the order and the flips; the same on every rank
        flip: bool,                    # mirror left-right with probability 1/2
        workers: int,                  # loader processes (0: read in this process)
        device: torch.device,          # where batches go
        skipped_log: Optional[Path],   # CSV of skipped files (None: printed only)
    ):
        self.dataset, self.batch, self.device, self.workers = dataset, batch, device, workers
        self.batches = EpochBatches(len(dataset), batch, world, seed, flip)
        self.epoch = 0                 # epochs finished
        self.position = 0              # batches of the current epoch used
        self.skipped_log = skipped_log
        self.skipped: Set[str] = set()
        if skipped_log is not None and skipped_log.is_file():
            self.skipped = {row["file"] for row in read_rows(skipped_log)}
        self.last_read = torch.zeros(0, dtype=torch.long)   # file positions read into the last batch
        self._loader: Optional[DataLoader] = None
        self._it: Optional[Iterator] = None

    def _start(self) -> None:
        """(Re)start the loader at (epoch, position)."""
        self.batches.epoch, self.batches.start = self.epoch, self.position
        if self._loader is None:
            self._loader = DataLoader(self.dataset, batch_sampler=self.batches, num_workers=self.workers,
                                      collate_fn=collate_items, persistent_workers=self.workers > 0,
                                      pin_memory=self.device.type == "cuda")
        self._it = iter(self._loader)

    def next(self) -> torch.Tensor:
        """The next batch, float32 [batch, 3, R, R] in [-1, 1] on the device."""
        if self._it is None:
            self._start()
        try:
            images, self.last_read, skipped = next(self._it)
        except StopIteration:
            self.epoch, self.position = self.epoch + 1, 0
            self._start()
            images, self.last_read, skipped = next(self._it)
        self.position += 1
        self._report(skipped)
        return from_uint8(images.to(self.device, non_blocking=True))

    def _report(self, skipped: List[Skipped]) -> None:
        new = [(f, why) for f, why in dict(skipped).items() if f not in self.skipped]
        if not new:
            return
        self.skipped.update(f for f, _ in new)
        for f, why in new:
            print(f"skipped unreadable image {Path(self.dataset.index.root) / f}: {why}")
        if self.skipped_log is not None:
            append_rows(self.skipped_log, [{"file": f, "reason": why} for f, why in new], SKIPPED_FIELDS)

    def close(self) -> None:
        """Stop the worker processes now. Left to the garbage collector, a finished run's workers linger,
        and once processes forked later share their pipes they no longer exit when asked: each costs the
        DataLoader's 5 s join timeout when it is finally collected (measured: runs of 3 s took 13-24 s)."""
        if self._it is not None and hasattr(self._it, "_shutdown_workers"):
            self._it._shutdown_workers()
        self._it = self._loader = None

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "files": len(self.dataset), "batch": self.batch}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        if int(state["files"]) != len(self.dataset) or int(state["batch"]) != self.batch:
            raise SystemExit(f"the checkpoint's data position is for {int(state['files'])} files in batches of "
                             f"{int(state['batch'])}, this run has {len(self.dataset)} in batches of {self.batch}; "
                             "resume with the same --data, --batch and number of processes")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._it = None   # restarted at that batch by the next call


# ---------------------------------------------------------------------------------- --align
def _face_file(rel: str, face: int) -> str:
    """The aligned face's file name: the photo's relative path with '/' as '__', then _<face>.png."""
    stem = os.path.splitext(rel)[0].replace("/", "__")
    return f"{stem}_{face}.png"


def _load_manifest(path: Path, source: str, size: int) -> Dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: unreadable alignment manifest ({e}); delete the folder to align again") from None
    if raw.get("format") != MANIFEST_FORMAT or raw.get("source") != source or raw.get("size") != size:
        raise SystemExit(f"{path} holds faces of {raw.get('source')} at {raw.get('size')} px, not of {source} at "
                         f"{size} px; use another --out")
    return dict(raw.get("photos", {}))


def align_folder(index: FolderIndex, out: Path, size: int, aligner=None, save_every: int = 25) -> FolderIndex:
    """Align every face of every photo of `index` into `out` at `size` px -> the index of the faces.

    `out`/manifest.json records each photo: {"faces": [file names]} or {"skipped": why}; written every
    `save_every` photos and at the end, and read back so a rerun aligns only photos not yet in it.
    `aligner`: a `latentspaces.align.FaceAligner` (default: one at `size`, FFHQ settings).
    """
    from experiments.photos import save_face   # the photo helpers sit beside the commands, above this module
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    photos = _load_manifest(manifest, index.root, size)
    todo = [f for f in index.files if f not in photos]
    if todo and aligner is None:
        from latentspaces.align import FaceAligner
        aligner = FaceAligner(size=size)

    def save() -> None:
        atomic_write_text(manifest, json.dumps({"format": MANIFEST_FORMAT, "source": index.root, "size": size,
                                                "photos": photos}, indent=1))
    for k, rel in enumerate(progress_bar(todo, desc=f"align {index.root}", unit="photo", disable=not todo)):
        try:
            faces = aligner.align_file(Path(index.root) / rel)
        except (FaceNotFoundError, CheckpointError, OSError) as e:
            photos[rel] = {"skipped": str(e)}
        else:
            names = [_face_file(rel, face.transform.face) for face in faces]
            for name, face in zip(names, faces):
                save_face(face.image, out / name)
            photos[rel] = {"faces": names}
        if (k + 1) % save_every == 0:
            save()
    save()
    faces = sorted(n for entry in photos.values() for n in entry.get("faces", ()))
    skipped = sum("skipped" in entry for entry in photos.values())
    if not faces:
        raise SystemExit(f"{index.root}: no face found in any of its {len(photos)} photo(s) (see {manifest})")
    print(f"aligned {len(faces)} face(s) from {len(photos) - skipped} photo(s) into {out}; {skipped} photo(s) "
          f"skipped (reasons in {manifest})")
    return FolderIndex(str(out.resolve()), tuple(faces))


@dataclass(frozen=True)
class FolderData:
    """The files a run trains and validates on: `train`, and `val` (None: the caller's default held-out set)."""

    train: FolderIndex
    val: Optional[FolderIndex]


def folder_indexes(data: Optional[str], val: Optional[str], val_split: Optional[float], heldout: int,
                   out: Path, resolution: int, align: bool, resume: bool, world: World) -> FolderData:
    """The training and held-out indexes of a run (see the module docstring); rank 0 builds and saves
    them into `out`, the other ranks read what it wrote. `data` None: no folder to train on (only --val)."""
    def build() -> FolderData:
        train = held = None
        if data is not None:
            saved = out / DATA_INDEX
            if resume and saved.is_file():
                train = FolderIndex.load(saved)
                source = str(Path(data).resolve())
                if not (train.root == source or (align and train.root == str((out / ALIGNED_FOLDER).resolve()))):
                    raise SystemExit(f"{out} was trained on {train.root}, not {source}; resume it with that --data, "
                                     "or use another --out")
                if (out / VAL_INDEX).is_file() and val is None:
                    held = FolderIndex.load(out / VAL_INDEX)
            else:
                walked: List[Skipped] = []
                train = FolderIndex.build(data, walked)
                report_walk(train.root, walked, out / SKIPPED_FILE)
                if align:
                    train = align_folder(train, out / ALIGNED_FOLDER, resolution)
                if val is None:
                    count = heldout if val_split is None else max(1, round(val_split * len(train)))
                    train, held = split_heldout(train, count)
                    held.save(out / VAL_INDEX)
                train.save(saved)
        if val is not None:
            walked_val: List[Skipped] = []
            held = FolderIndex.build(val, walked_val)   # already aligned: --align aligns --data only
            report_walk(held.root, walked_val, None)
        return FolderData(train, held)

    if world.size == 1:
        return build()
    result = build() if world.main else None
    world.barrier()   # rank 0 has written the indexes (and the aligned faces)
    if not world.main:
        train = FolderIndex.load(out / DATA_INDEX) if data is not None else None
        held = (FolderIndex.build(val) if val is not None
                else FolderIndex.load(out / VAL_INDEX) if (out / VAL_INDEX).is_file() else None)
        result = FolderData(train, held)
    return result


__all__ = ["ALIGNED_FOLDER", "DATA_INDEX", "EpochBatches", "FolderData", "FolderStream", "MANIFEST",
           "SKIPPED_FILE", "VAL_INDEX", "align_folder", "folder_indexes", "read_heldout", "report_walk", "split_heldout"]
