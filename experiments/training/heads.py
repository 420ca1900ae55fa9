"""What the trainers of networks over a frozen generator share (the F and W+ encoders and the heads):
their common flags, their setup and their export through `encoders.save_encoder`.

A subclass of `HeadTrainer` builds its network (`self.network`) and its optimizer, and says what one
step does; `train_head` loads the generator, builds the trainer and runs it in the shared loop.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Dict

import torch

import latentspaces as ls
from latentspaces import assets
from encoders import load_encoder, save_encoder
from experiments.argtypes import encoder_spec, int_in, learning_rate, training_steps
from experiments.distributed import World
from experiments.training.common import rank_batch, start_run
from experiments.training.images import HeldoutScores, TrainingImages
from experiments.training.loop import Trainer, TrainingLoop
from latentspaces.errors import ModelChoiceError
from latentspaces.metrics.perceptual import DEFAULT_PERCEPTUAL, PERCEPTUAL_CHOICES


def add_head_flags(ap: argparse.ArgumentParser, steps: int, batch: int, lr: float, base_encoder: bool = False) -> None:
    """--generator, --steps, --batch, --lr, --perceptual and --half, with this trainer's defaults; --base-encoder
    for a head over a frozen W+ encoder (`HeadTrainer.over_base_encoder`)."""
    ap.add_argument("--generator", default=assets.DEFAULT_GENERATOR, help="generator name or checkpoint path")
    ap.add_argument("--steps", type=training_steps, default=steps)
    ap.add_argument("--batch", type=int_in(1, 65_536), default=batch, help="images per step, over all processes")
    ap.add_argument("--lr", type=learning_rate, default=lr)
    ap.add_argument("--perceptual", default=DEFAULT_PERCEPTUAL, choices=PERCEPTUAL_CHOICES,
                    help="'auto': LPIPS-VGG when its backbone is installed, else the default model's D features")
    ap.add_argument("--half", action="store_true", help="export float16 weights")
    if base_encoder:
        ap.add_argument("--base-encoder", type=encoder_spec, default=assets.DEFAULT_WPLUS_ENCODER,
                        help=f"W+ encoder name or file, frozen (default {assets.DEFAULT_WPLUS_ENCODER})")


class HeadTrainer(Trainer):
    """A network trained over a frozen generator, exported as OUT/<export_file> by `encoders.save_encoder`."""

    export_file: str = "encoder.safetensors"   # file name of the export in the run directory
    trained_by: str = ""                       # the command's module, recorded in the export's metadata
    synthetic_ratio: float = 0.0               # default share of generated images per batch (--synthetic-ratio)
    over_base_encoder: bool = False            # a head over a frozen W+ encoder (--base-encoder, loaded as self.base)

    def __init__(self, args: argparse.Namespace, out: Path, G: ls.Generator, world: World, device: torch.device):
        self.args = args                       # the parsed flags (add_run_flags, add_head_flags, the trainer's own)
        self.out = out                         # run directory
        self.G = G                             # the frozen generator (eval mode, no gradients)
        self.world = world                     # this process among the ranks
        self.device = device                   # this rank's device
        self.batch = rank_batch(world, args.batch)   # this rank's images per step
        self.network: torch.nn.Module          # the trained network: set by the subclass
        self.perceptual = None                 # its perceptual distance (None: pixels only): set by the subclass
        self.images = TrainingImages(args, G, device, world, self.batch, self.default_synthetic_ratio(args.data))
        self.heldout = self.images.heldout     # [N, 3, R, R] held-out images, or None
        self.scores = HeldoutScores(self.heldout if world.main else None, args.identity)
        if self.over_base_encoder:   # x [N, 3, R, R] -> ws [N, num_ws, w_dim], frozen
            self.base = load_encoder(args.base_encoder, device=device).eval().requires_grad_(False)

    def default_synthetic_ratio(self, data: str) -> float:
        """The share of generated images per batch when --synthetic-ratio is not given, for --data `data`."""
        return self.synthetic_ratio

    def streams(self) -> Dict[str, object]:
        return self.images.streams()

    def close(self) -> None:
        self.images.close()

    def export_meta(self, step: int) -> Dict[str, object]:
        """Metadata of this trainer's export beyond the shared fields."""
        return {}

    def export(self, step: int) -> None:
        self.network.eval()
        meta = {"generator": self.args.generator, "steps": step, "batch": self.args.batch,
                "processes": self.world.size,
                "perceptual": "none" if self.perceptual is None else str(self.perceptual.name),
                "trained_by": self.trained_by, **self.images.meta(), **self.export_meta(step)}
        save_encoder(self.network, self.out / self.export_file, meta=meta, half=self.args.half)
        print(f"wrote {self.out / self.export_file} ({step} steps)")


def train_head(make: Callable[[argparse.Namespace, Path, ls.Generator, World, torch.device], HeadTrainer],
               args: argparse.Namespace) -> Path:
    """Load --generator, build the trainer with `make` and run it for --steps in the shared loop."""
    out, device, G, world = start_run(args)
    try:
        trainer = make(args, out, G, world, device)
    except ModelChoiceError as e:   # a --perceptual that does not fit this generator: one line, no traceback
        raise SystemExit(str(e)) from None
    TrainingLoop(trainer, out, world, total=args.steps, snap=args.snap,
                 resume=args.resume, max_seconds=args.max_seconds, config=vars(args), device=device).run()
    return out
