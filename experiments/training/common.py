"""What the trainers share besides the loop: run setup, flags, per-rank batches and seeds, training codes,
and the plot of log.csv.

Under `torchrun` every trainer joins the process group in `open_run` and trains on its share of every
batch (`rank_batch`, `rank_seed`, `World.average_gradients_` in experiments/distributed.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from matplotlib.figure import Figure

import latentspaces as ls
from experiments.argtypes import DEFAULT_DEVICE, device_name, int_in, positive_float, positive_int
from experiments.argtypes import seed as seed_flag
from experiments.config import Config, option
from experiments.distributed import World, close_world, init_world
from experiments.rows import read_rows
from latentspaces.storage import save_figure
from latentspaces.threads import use_threads

# ---------------------------------------------------------------------------------- flags
def probability(text: str) -> float:
    """argparse type: a number in [0, 1] (a mixing probability, a share of the batch)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value:g} is not in [0, 1]")
    return value


def snap_option(steps: int):
    """The `snap` field of a trainer's config: steps between checkpoints / log rows, `steps` by default."""
    return option(steps, "steps between checkpoints / log rows", type=positive_int)


@dataclass(frozen=True)
class RunConfig(Config):
    """What every trainer's config holds: where the run writes, how often it snapshots, when it stops, where it
    runs. `latentspaces train NAME` makes the flags from these fields (`experiments.config`)."""

    out: Optional[str] = option(None, "run directory (checkpoint, log, plots, export)", required=True)
    snap: int = snap_option(100)
    max_seconds: Optional[float] = option(None, "stop (with a checkpoint, then export) after this long; --resume "
                                                "continues", type=positive_float, default_text="no limit")
    resume: bool = option(False, "continue from OUT/checkpoint.pt", const=True)
    device: str = option(DEFAULT_DEVICE, "cpu, cuda, cuda:N or mps", type=device_name)
    seed: int = option(0, "seed of the run's random draws, 0 .. 2^32 - 1", type=seed_flag)
    threads: Optional[int] = option(None, "compute threads", type=int_in(1, 1024),
                                    default_text="OMP_NUM_THREADS if set, else the usable CPUs less the machine's "
                                                 "load, split over torchrun's local ranks")

    def __post_init__(self) -> None:
        if self.out is None:
            raise ValueError(f"{type(self).__name__}: out, the run directory, is required")


# ---------------------------------------------------------------------------------- run setup
def open_run(args: argparse.Namespace) -> Tuple[Path, torch.device, World]:
    """(run directory, device, world) for a trainer's --out, --device and --seed.

    Under `torchrun` this process joins the process group first; the device becomes its GPU.
    """
    world, device_name = init_world(args.device)
    choice = use_threads(args.threads)
    if choice.note and world.main:
        print(choice.note)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    return out, torch.device(device_name), world


def start_run(args: argparse.Namespace) -> Tuple[Path, torch.device, ls.Generator, World]:
    """`open_run`, plus the frozen generator of --generator (eval mode, no gradients) on the device."""
    out, device, world = open_run(args)
    return out, device, ls.load_generator(args.generator, device=device).eval().requires_grad_(False), world


def finish_run(world: World) -> None:
    """Leave the process group at the end of a trainer (every rank, together)."""
    if world.size > 1:
        close_world()


def rank_batch(world: World, batch: int) -> int:
    """This rank's share of a `batch` of images per step (the batch is the total over all ranks)."""
    if batch % world.size:
        raise SystemExit(f"--batch {batch} does not split over {world.size} processes; use a multiple of "
                         f"{world.size}")
    return batch // world.size


def rank_seed(world: World, seed: int) -> int:
    """The seed of this rank's data stream: `seed` itself on rank 0 (a one-process run is unchanged)."""
    return seed + 1_000_003 * world.rank


# ---------------------------------------------------------------------------------- data and losses
def training_codes(G: ls.Generator, batch: int, mixing: float, gen: torch.Generator) -> torch.Tensor:
    """ws [B, num_ws, w_dim] of random z's (drawn from `gen`), past a random cutoff those of a second z
    with probability `mixing` (style mixing)."""
    device = G.w_avg.device
    z = torch.randn(batch, G.z_dim, generator=gen, device=gen.device).to(device)
    ws = G.broadcast(G.mapping(z))
    if mixing > 0 and torch.rand([], generator=gen, device=gen.device).item() < mixing:
        cutoff = int(torch.randint(1, G.num_ws, [], generator=gen, device=gen.device))
        z2 = torch.randn(batch, G.z_dim, generator=gen, device=gen.device).to(device)
        ws = torch.cat([ws[:, :cutoff], G.broadcast(G.mapping(z2))[:, cutoff:]], dim=1)
    return ws


# ---------------------------------------------------------------------------------- plots
def plot_log(log: Path, png: Path, columns: Sequence[str] = ("loss", "heldout_mse")) -> None:
    """One panel per column of log.csv against its first column (step or kimg): losses and MSEs on a log
    scale, SSIM and identity columns on a linear one."""
    data = read_rows(log)
    if not data:
        return
    head = list(data[0])
    fig = Figure(figsize=(4.5 * len(columns), 3.2))
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, col in zip(axes, columns):
        ax.plot([float(r[head[0]]) for r in data], [float(r[col]) for r in data], marker=".")
        ax.set_xlabel(head[0])
        ax.set_ylabel(col)
        if not col.endswith(("_ssim", "_identity")):   # similarities near 1 read better on a linear axis
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, png, dpi=120)
