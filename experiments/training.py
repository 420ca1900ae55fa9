"""Helpers shared by the encoder and compensation-head trainers: training codes, perceptual loss, plots."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def start_run(args):
    """(run directory, device, frozen generator) for a trainer's args (--out, --device, --seed, --generator)."""
    import latentspaces as ls

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    return out, device, ls.load_generator(args.generator, device=device).eval().requires_grad_(False)


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
