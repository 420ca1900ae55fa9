"""Where the trainers of networks over a frozen generator get their images, how their held-out images are
scored, and the discriminator they start from: one choice (`--data`) shared by all six trainers.

Sources (`--data`):
- 'default': the default domain's faces (the DCGAN sampler, 64 px), with the shipped held-out faces for
  the snapshots. Only for 64 px generators.
- 'generator': the frozen generator's own samples G(w), w = mapping(z) with z ~ N(0, I) (no truncation),
  with 16 samples of a fixed seed as the held-out set. For any generator: what a head can be trained on
  when no photos are at hand. It learns to compensate the base encoder's errors on images the generator
  can render; on photos the errors also hold what the generator cannot render, so a head meant for
  photos needs photos (the papers train on FFHQ).
- a folder: its image files at any depth, resized to the generator's resolution, read by worker
  processes, sharded over the ranks and resumed at the exact batch (experiments/training/folder_data.py;
  --align, --flip, --loader-workers, --val, --val-split).

`--synthetic-ratio R`: that share of each batch is the generator's own samples, the rest from --data
(each trainer has its default: the encoders and ReGANIE need generated images whose codes are known).
`--val DIR` replaces the held-out images of any source.

`draw(n, generator)` takes the trainer's seeded generator for the sampled sources, so a resumed run
continues its random stream; a folder's position is checkpointed by the loop (`stream`).
Every snapshot scores the held-out images with `HeldoutScores`: MSE, SSIM and calibrated identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

import latentspaces as ls
from experiments.argtypes import data_source, folder_text, int_in, positive_int
from experiments.config import Config, option
from experiments.distributed import World
from experiments.training.common import probability, training_codes
from experiments.training.folder_data import SKIPPED_FILE, FolderStream, folder_indexes, read_heldout
from latentspaces.assets import heldout_targets
from latentspaces.datasets import FaceSampler
from latentspaces.datasets.image_folder import ImageFolder
from latentspaces.metrics.identity import IDENTITY_CHOICES, make_identity
from latentspaces.metrics.identity_calibration import calibrate_identity
from latentspaces.losses import mean_squared_error
from latentspaces.metrics.image import ssim

SAMPLED_SOURCES = ("default", "generator")
DEFAULT_DOMAIN_RESOLUTION = 64
HELDOUT_SEED = 2**31 - 1   # the generator source's held-out samples: a seed no training stream starts from
GPU_LOADER_WORKERS = 4    # --loader-workers on a GPU: a core decodes ~28 1024 px PNGs per second (BENCHMARKS.md)


def synthetic_ratio_option(default_text: str = "0"):
    """The `synthetic_ratio` field: None means the trainer's own share (`HeadTrainer.synthetic_ratio`), said in the help
    as `default_text` ('0', or e.g. '1 for default/generator, 0.5 for a folder')."""
    return option(None, "share of each batch drawn from the generator, the rest from --data", type=probability,
                  default_text=default_text)


@dataclass(frozen=True)
class DataConfig(Config):
    """Where a trainer's images come from (see the module docstring) and which are held out."""

    data: str = option("default", "training images: the default domain's 64 px faces ('default'), the generator's own "
                                  "samples ('generator', any resolution), or a folder of images at any depth "
                                  "(PNG/JPEG/WEBP/...)", type=data_source, metavar="default|generator|DIR")
    synthetic_ratio: Optional[float] = synthetic_ratio_option()
    align: bool = option(False, "align the folder's raw photos first (FFHQ procedure, dlib) into OUT/aligned/",
                         const=True)
    flip: bool = option(False, "mirror folder images left-right with probability 1/2", const=True)
    loader_workers: Optional[int] = option(None, "processes reading a folder's images, per training process",
                                           type=int_in(0, 64), default_text="0 on the CPU, where decoding costs under 1% "
                                                                            f"of a step; {GPU_LOADER_WORKERS} on a GPU")
    val: Optional[str] = option(None, "folder of held-out images scored at every snapshot", type=folder_text,
                                metavar="DIR", default_text="--heldout-images files split off a --data folder, or the "
                                                            "source's own held-out set")
    val_split: Optional[float] = option(None, "share of a --data folder held out (chosen by a fixed seed)",
                                        type=probability, default_text="--heldout-images files")
    heldout_images: int = option(16, "held-out images scored at every snapshot (the first 8 drawn in the grid)",
                                 type=positive_int)
    identity: str = option("dlib", "face descriptor of the snapshots' calibrated identity ('none': MSE and SSIM only)",
                           choices=IDENTITY_CHOICES)


def is_folder_source(data: str) -> bool:
    return data not in SAMPLED_SOURCES


class TrainingImages:
    """Training and held-out images [N, 3, R, R] in ~[-1, 1] at the generator's resolution R."""

    def __init__(
        self,
        args: DataConfig,           # a trainer's config: its data fields (folders checked when parsed), out, resume, seed
        G: ls.Generator,            # the frozen generator the network is trained over
        device: torch.device,       # where the images are made
        world: World,               # this process among the ranks (a folder is sharded over them)
        batch: int,                 # this rank's images per step
        synthetic_ratio: float,     # the trainer's default share of generated images (--synthetic-ratio wins)
    ):
        self.G, self.device, self.source = G, device, args.data
        self.synthetic_ratio = synthetic_ratio if args.synthetic_ratio is None else args.synthetic_ratio
        self.n_synthetic = int(round(batch * self.synthetic_ratio))      # generated images per batch
        self.n_source = batch - self.n_synthetic                         # images per batch from --data
        folder = is_folder_source(args.data)
        for flag in ("align", "flip", "val_split"):
            if getattr(args, flag) not in (None, False) and not folder:
                raise SystemExit(f"--{flag.replace('_', '-')} works on a --data folder, not --data {args.data}")
        usable = args.data != "default" or G.resolution == DEFAULT_DOMAIN_RESOLUTION
        if not usable and self.n_source > 0:
            raise SystemExit(f"--data default draws the default domain's {DEFAULT_DOMAIN_RESOLUTION} px faces and this "
                             f"generator makes {G.resolution} px images; pass --data generator (its own samples) or a "
                             "folder of images")
        self.faces = FaceSampler(device) if args.data == "default" and usable else None
        self.stream: Optional[FolderStream] = None
        out = Path(args.out)
        resume = bool(args.resume) and (out / "checkpoint.pt").is_file()
        indexes = folder_indexes(args.data if folder else None, args.val, args.val_split, args.heldout_images,
                                 out, G.resolution, args.align, resume, world) if folder or args.val else None
        if folder:
            workers = args.loader_workers
            if workers is None:
                workers = GPU_LOADER_WORKERS if device.type == "cuda" else 0
            self.stream = FolderStream(ImageFolder(indexes.train, G.resolution), max(self.n_source, 1), world,
                                       args.seed, args.flip, workers, device, out / SKIPPED_FILE)
            self.stream.dataset.first_readable()   # a folder of unreadable files: one line now, not after an hour
        if indexes is not None and indexes.val is not None:
            self.heldout = read_heldout(indexes.val, G.resolution, args.heldout_images).to(device)
            self.heldout_from = f"{len(self.heldout)} of {indexes.val.root}"
        elif usable and not folder:
            self.heldout = self._sampled_heldout(args.heldout_images)
            self.heldout_from = ("the shipped held-out faces" if self.faces is not None
                                 else f"generator samples of seed {HELDOUT_SEED}")
        else:
            self.heldout, self.heldout_from = None, "none"
        if world.main:
            print(f"data: {self.describe()}; held out: {self.heldout_from}")

    def describe(self) -> str:
        """One line: the source, its size, the synthetic share."""
        if self.stream is None:
            what = {"default": "the default domain's faces", "generator": "the generator's samples"}[self.source]
        else:
            what = (f"{len(self.stream.dataset)} images of {self.stream.dataset.index.root}"
                    f"{', flipped at random' if self.stream.batches.flip else ''}")
        return f"{what}, synthetic ratio {self.synthetic_ratio:g}"

    @torch.no_grad()
    def _sampled_heldout(self, n: int) -> torch.Tensor:
        if self.faces is not None:
            return heldout_targets(n).to(self.device)
        return self.G.synthesis(training_codes(self.G, n, 0.0, torch.Generator().manual_seed(HELDOUT_SEED)),
                                noise_mode="const")

    @torch.no_grad()
    def draw_source(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n images of --data alone (a folder gives its next batch: n must be `n_source`)."""
        if self.stream is not None:
            if n != self.n_source:
                raise ValueError(f"a folder's batches hold {self.n_source} images, asked for {n}")
            return self.stream.next()
        if self.faces is not None:
            return self.faces.from_z(torch.randn(n, 100, generator=generator, device=generator.device).to(self.device))
        return self.generated(n, generator)

    @torch.no_grad()
    def generated(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n samples of the generator (codes drawn with `generator`)."""
        return self.G.synthesis(training_codes(self.G, n, 0.0, generator), noise_mode="const")

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """A batch of n images: the generator's `n_synthetic` first, then `n_source` of --data."""
        if n != self.n_synthetic + self.n_source:
            raise ValueError(f"batches hold {self.n_synthetic + self.n_source} images, asked for {n}")
        parts = []
        if self.n_synthetic:
            parts.append(self.generated(self.n_synthetic, generator))
        if self.n_source:
            parts.append(self.draw_source(self.n_source, generator))
        return torch.cat(parts)

    def streams(self) -> Dict[str, FolderStream]:
        """What the loop checkpoints of the data: a folder's position (none for the sampled sources)."""
        return {} if self.stream is None else {"data_position": self.stream}

    def close(self) -> None:
        """Stop a folder's loader processes (the end of a run)."""
        if self.stream is not None:
            self.stream.close()

    def meta(self) -> Dict[str, object]:
        """The data fields of an export's metadata."""
        data = self.source if self.stream is None else self.stream.dataset.index.root
        return {"data": data, "synthetic_ratio": self.synthetic_ratio, "heldout": self.heldout_from}


class HeldoutScores:
    """MSE, SSIM and calibrated identity of reconstructions of the held-out images (rank 0's snapshots).

    Identity: the cosine similarity of face descriptors (`--identity`), calibrated on the held-out set
    itself (`latentspaces.metrics.identity_calibration`: 0 is another person of the set on average, 1
    the same image); NaN with fewer than 2 held-out images or `--identity none`.
    """

    COLUMNS = ("heldout_mse", "heldout_ssim", "heldout_identity")

    def __init__(self, targets: Optional[torch.Tensor], identity: Optional[str]):
        self.targets = targets                      # [N, 3, R, R] in [-1, 1], or None (no held-out set)
        usable = targets is not None and len(targets) >= 2 and identity not in (None, "none")
        self.identity = make_identity(identity) if usable else None
        self.calibration = None                     # measured at the first snapshot

    @torch.no_grad()
    def __call__(self, recon: Optional[torch.Tensor], prefix: str = "heldout") -> Dict[str, float]:
        """{prefix_mse, prefix_ssim, prefix_identity} of recon [N, 3, R, R] against the targets."""
        nan = float("nan")
        if self.targets is None or recon is None:
            return {f"{prefix}_mse": nan, f"{prefix}_ssim": nan, f"{prefix}_identity": nan}
        x, y = recon.float().clamp(-1, 1).cpu(), self.targets.float().cpu()
        scores = {f"{prefix}_mse": mean_squared_error(recon.float(), self.targets.float()).item(),
                  f"{prefix}_ssim": ssim(x, y).mean().item(), f"{prefix}_identity": nan}
        if self.identity is not None:
            if self.calibration is None:
                self.calibration = calibrate_identity(self.identity, y)
            value = self.calibration.calibrate(self.identity(x, y)).mean().item()
            scores[f"{prefix}_identity"] = value if math.isfinite(value) else nan
        return scores


__all__ = ["HELDOUT_SEED", "HeldoutScores", "SAMPLED_SOURCES", "TrainingImages", "DataConfig", "synthetic_ratio_option",
           "is_folder_source"]
