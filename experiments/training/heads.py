"""What the trainers of networks over a frozen generator share (the F and W+ encoders and the heads):
their common flags, their setup and their export through `encoders.save_encoder`.

A subclass of `HeadTrainer` builds its network (`self.network`) and its optimizer, and says what one
step does; `train_head` loads the generator, builds the trainer and runs it in the shared loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict

import torch

import latentspaces as ls
from latentspaces import assets
from encoders import load_encoder, save_encoder
from experiments.argtypes import encoder_spec, generator_spec, int_in, learning_rate, training_steps
from experiments.config import option
from experiments.distributed import World
from experiments.training.common import RunConfig, rank_batch, rank_seed, start_run
from experiments.training.images import DEFAULT_DOMAIN_RESOLUTION, DataConfig, HeldoutScores, TrainingImages
from experiments.training.loop import Trainer, TrainingLoop
from latentspaces.discriminator import Discriminator, load_default_discriminator
from latentspaces.errors import ModelChoiceError
from latentspaces.metrics.perceptual import DEFAULT_PERCEPTUAL, PERCEPTUAL_CHOICES


def steps_option(steps: int):
    """The `steps` field of a trainer's config, `steps` by default."""
    return option(steps, "training steps", type=training_steps)


def batch_option(batch: int):
    """The `batch` field of a trainer's config, `batch` by default."""
    return option(batch, "images per step, over all processes", type=int_in(1, 65_536))


def lr_option(lr: float):
    """The `lr` field of a trainer's config, `lr` by default."""
    return option(lr, "Adam's learning rate", type=learning_rate)


@dataclass(frozen=True)
class HeadConfig(DataConfig, RunConfig):
    """A network trained over a frozen generator (the F and W+ encoders, the heads): the run, its data (`DataConfig`)
    and the numbers every such trainer has."""

    generator: str = option(assets.DEFAULT_GENERATOR, "generator name or checkpoint path", type=generator_spec)
    steps: int = steps_option(2000)
    batch: int = batch_option(8)
    lr: float = lr_option(1e-3)
    perceptual: str = option(DEFAULT_PERCEPTUAL, "'auto': LPIPS-VGG when its backbone is installed, else the default "
                                                 "model's D features", choices=PERCEPTUAL_CHOICES)
    half: bool = option(False, "export float16 weights", const=True)


@dataclass(frozen=True)
class OverBaseConfig(HeadConfig):
    """A compensation head over a frozen W+ encoder (`HeadTrainer.over_base_encoder`)."""

    base_encoder: str = option(assets.DEFAULT_WPLUS_ENCODER, "W+ encoder name or file, frozen", type=encoder_spec)


def starting_discriminator(G: ls.Generator) -> tuple:
    """(discriminator, what it is): the default model's trained one for a 64 px generator, else a fresh
    StyleGAN2 discriminator at G's resolution (channels min(16384 / r, 512))."""
    if G.resolution == DEFAULT_DOMAIN_RESOLUTION and G.img_channels == 3:
        return load_default_discriminator(), "the default model's"
    return Discriminator(G.resolution, img_channels=G.img_channels), f"fresh at {G.resolution} px"


class HeadTrainer(Trainer):
    """A network trained over a frozen generator, exported as OUT/<export_file> by `encoders.save_encoder`."""

    plot_columns = ("loss", *HeldoutScores.COLUMNS)   # drawn in loss.png: the loss and the held-out scores
    export_file: str = "encoder.safetensors"   # file name of the export in the run directory
    synthetic_ratio: float = 0.0               # default share of generated images per batch (--synthetic-ratio)
    over_base_encoder: bool = False            # a head over a frozen W+ encoder (--base-encoder, loaded as self.base)

    def __init__(self, args: HeadConfig, out: Path, G: ls.Generator, world: World, device: torch.device):
        self.args = args                       # the trainer's config (RunConfig, DataConfig, HeadConfig, its own)
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

    def trained(self, net: torch.nn.Module) -> torch.nn.Module:
        """`net` on this rank's device in training mode, the same on every rank: the network this trainer
        trains and exports (`self.network`)."""
        self.network = net.to(self.device).train()
        self.world.broadcast_(self.network)
        return self.network

    def adversary(self) -> torch.nn.Module:
        """The image discriminator of the adversarial term on this rank's device, the same on every rank; its
        start ('the default model's', 'fresh at R px') is kept as `self.D_start` for the export."""
        D, self.D_start = starting_discriminator(self.G)
        D = D.to(self.device).train()
        self.world.broadcast_(D)
        return D

    def seeded(self, offset: int, on_device: bool = True) -> torch.Generator:
        """A random stream of this rank seeded from --seed + `offset` (on the rank's device or the CPU)."""
        return torch.Generator(device=self.device if on_device else "cpu").manual_seed(
            rank_seed(self.world, self.args.seed + offset))

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
                "trained_by": type(self).__module__, **self.images.meta(), **self.export_meta(step)}
        save_encoder(self.network, self.out / self.export_file, meta=meta, half=self.args.half)
        print(f"wrote {self.out / self.export_file} ({step} steps)")


def train_head(make: Callable[[HeadConfig, Path, ls.Generator, World, torch.device], HeadTrainer],
               args: HeadConfig) -> Path:
    """Load --generator, build the trainer with `make` and run it for --steps in the shared loop."""
    out, device, G, world = start_run(args)
    try:
        trainer = make(args, out, G, world, device)
    except ModelChoiceError as e:   # a --perceptual that does not fit this generator: one line, no traceback
        raise SystemExit(str(e)) from None
    TrainingLoop(trainer, out, world, total=args.steps, snap=args.snap,
                 resume=args.resume, max_seconds=args.max_seconds, config=asdict(args), device=device).run()
    return out
