"""Helpers shared by the encoder and compensation-head trainers: training codes, perceptual loss, plots,
and the pieces of data-parallel training under `torchrun` (experiments/distributed.py)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from experiments.distributed import World, close_world, init_world


def start_run(args):
    """(run directory, device, frozen generator, world) for a trainer's args (--out, --device, --seed, --generator).

    Under `torchrun` this process joins the process group first and trains on its share of every
    batch (`rank_batch`, `rank_seed`, `World.average_gradients_`); the device becomes its GPU.
    """
    import latentspaces as ls

    world, device_name = init_world(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device_name)
    torch.manual_seed(args.seed)
    return out, device, ls.load_generator(args.generator, device=device).eval().requires_grad_(False), world


def rank_batch(world: World, batch: int) -> int:
    """This rank's share of a `batch` of images per step (the batch is the total over all ranks)."""
    if batch % world.size:
        raise SystemExit(f"--batch {batch} does not split over {world.size} processes; use a multiple of "
                         f"{world.size}")
    return batch // world.size


def rank_seed(world: World, seed: int) -> int:
    """The seed of this rank's data stream: `seed` itself on rank 0 (a one-process run is unchanged)."""
    return seed + 1_000_003 * world.rank


def generator_states(world: World, gen: torch.Generator) -> torch.Tensor:
    """Every rank's state of its data generator, [world size, state bytes] (for the checkpoint)."""
    return torch.stack([s.cpu() for s in world.gather(gen.get_state())])


def restore_generator(world: World, gen: torch.Generator, saved: torch.Tensor, path: Path) -> None:
    """Set `gen` to this rank's row of `generator_states` from a checkpoint (1-D: one process wrote it)."""
    saved = saved.cpu()
    rows = saved.unsqueeze(0) if saved.dim() == 1 else saved
    if rows.shape[0] != world.size:
        raise SystemExit(f"{path} was written by {rows.shape[0]} process(es); resume it with as many "
                         f"(torchrun --nproc_per_node={rows.shape[0]}), not {world.size}")
    gen.set_state(rows[world.rank].clone())  # a copy: set_state of a row view (storage offset > 0) segfaults


def finish_run(world: World) -> None:
    """Leave the process group at the end of a trainer (every rank)."""
    world.barrier()
    if world.size > 1:
        close_world()


def atomic_save(state: dict, path: Path) -> None:
    """torch.save to path.tmp, then rename: a killed run never leaves a half-written checkpoint."""
    torch.save(state, str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)


def training_codes(G, batch: int, mixing: float, gen: torch.Generator) -> torch.Tensor:
    """ws [B, num_ws, w_dim] of random z's, past a random cutoff those of a second z with probability `mixing`."""
    z = torch.randn(batch, G.z_dim, generator=gen).to(G.w_avg.device)
    ws = G.broadcast(G.mapping(z))
    if torch.rand([], generator=gen).item() < mixing:
        cutoff = int(torch.randint(1, G.num_ws, [], generator=gen))
        z2 = torch.randn(batch, G.z_dim, generator=gen).to(z.device)
        ws = torch.cat([ws[:, :cutoff], G.broadcast(G.mapping(z2))[:, cutoff:]], dim=1)
    return ws


def resolve_perceptual(name: str, G, device):
    """The perceptual distance by name; 'auto' prefers LPIPS-VGG, else the default model's D features."""
    from latentspaces.metrics.perceptual import lpips_available, make_perceptual

    if name == "none":
        return None
    if name == "auto":
        name = "lpips-vgg" if lpips_available("vgg") else "d-features"
    if name == "d-features":
        from latentspaces.assets import load_default_discriminator
        from latentspaces.metrics.d_features import DiscriminatorFeatures

        if G.resolution != 64:
            raise SystemExit("the D-features distance belongs to the 64 px default model; pass --perceptual lpips-vgg")
        return DiscriminatorFeatures(load_default_discriminator()).to(device)
    return make_perceptual(name).to(device)


def plot_log(log: Path, png: Path, columns=("loss", "heldout_mse")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [line.split(",") for line in log.read_text().splitlines()]
    head, data = rows[0], rows[1:]
    if not data:
        return
    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.2))
    for ax, col in zip(axes, columns):
        j = head.index(col)
        ax.plot([int(r[0]) for r in data], [float(r[j]) for r in data], marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel(col)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
