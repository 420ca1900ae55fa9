"""Train the default 64x64 face StyleGAN2 (or any small StyleGAN2) on the DCGAN face domain.

    python -m experiments.train_stylegan2 --out runs/default_g --kimg 1000 --batch 64 --device cuda
    python -m experiments.train_stylegan2 --out runs/default_g --resume      # continue a killed run

StyleGAN2 recipe (Karras et al. 2020, stylegan2-ada 'auto' hyperparameters): non-saturating
logistic loss, lazy R1 on reals every 16 D steps (gamma = 0.0002 R^2 / batch unless given),
Adam lr 0.0025, betas (0, 0.99) with the lazy-regularization correction for D, G EMA with
half-life 10 * batch / 32 kimg (ramp-up 0.05), style mixing with probability 0.9. No path-length
regularization and no augmentation: the data are endless fresh DCGAN samples, so D cannot
memorise them. Every `--snap` kimg: an atomic checkpoint (plain tensors, loadable weights-only),
an 8x8 grid of G_ema samples and a row in log.csv. At the end: w_avg from 100k mapping samples,
and `generator.safetensors` / `discriminator.safetensors` in the project's own format.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from latentspaces import Generator, save_generator
from latentspaces.datasets import FaceSampler
from latentspaces.discriminator import Discriminator, save_discriminator

DEFAULT_G_CHANNELS = {4: 256, 8: 256, 16: 128, 32: 48, 64: 16}
DEFAULT_D_CHANNELS = {64: 32, 32: 64, 16: 128, 8: 256, 4: 256}
R1_INTERVAL = 16


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run directory (checkpoint, grids, log, exports)")
    ap.add_argument("--kimg", type=float, default=1000, help="training length in thousands of real images")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gamma", type=float, default=None, help="R1 weight (default 0.0002 R^2 / batch)")
    ap.add_argument("--lr", type=float, default=0.0025)
    ap.add_argument("--snap", type=float, default=50, help="kimg between checkpoints / grids")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--g-channels", type=json.loads, default=DEFAULT_G_CHANNELS, help="JSON {res: ch}")
    ap.add_argument("--d-channels", type=json.loads, default=DEFAULT_D_CHANNELS, help="JSON {res: ch}")
    ap.add_argument("--z-dim", type=int, default=512)
    ap.add_argument("--mapping-layers", type=int, default=8)
    ap.add_argument("--mixing", type=float, default=0.9, help="style-mixing probability")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop (with a checkpoint) after this long")
    ap.add_argument("--w-avg-samples", type=int, default=100_000, help="mapping samples for the exported w_avg")
    return ap.parse_args(argv)


def build(args):
    G = Generator(z_dim=args.z_dim, w_dim=args.z_dim, resolution=args.resolution, mapping_layers=args.mapping_layers,
                  channels={int(k): v for k, v in args.g_channels.items()})
    D = Discriminator(args.resolution, {int(k): v for k, v in args.d_channels.items()})
    G_ema = Generator(**G.config)
    G_ema.load_state_dict(G.state_dict())
    return G, D, G_ema.eval().requires_grad_(False)


def make_ws(G: Generator, batch: int, mixing: float, gen: torch.Generator, device) -> torch.Tensor:
    """ws [B, num_ws, w_dim] with style mixing: past a random cutoff, ws of a second z."""
    z = torch.randn(batch, G.z_dim, generator=gen, device=device)
    ws = G.broadcast(G.mapping(z))
    if mixing > 0 and torch.rand([], generator=gen, device=device).item() < mixing:
        cutoff = int(torch.randint(1, G.num_ws, [], generator=gen, device=device).item())
        z2 = torch.randn(batch, G.z_dim, generator=gen, device=device)
        ws = torch.cat([ws[:, :cutoff], G.broadcast(G.mapping(z2))[:, cutoff:]], dim=1)
    return ws


def save_grid(G_ema: Generator, z: torch.Tensor, path: Path) -> None:
    from torchvision.utils import save_image

    with torch.no_grad():
        img = G_ema(z, noise_mode="const")
    save_image((img.clamp(-1, 1) + 1) / 2, str(path), nrow=8)


def train(args) -> Path:
    if args.resolution > 64 or 64 % args.resolution:
        raise ValueError(f"the DCGAN face domain is 64 px: --resolution must divide 64, got {args.resolution}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    G, D, G_ema = build(args)
    G, D, G_ema = G.to(device), D.to(device), G_ema.to(device)
    ratio = R1_INTERVAL / (R1_INTERVAL + 1)
    opt_G = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.0, 0.99), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=args.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
    gamma = args.gamma if args.gamma is not None else 0.0002 * args.resolution**2 / args.batch
    data = FaceSampler(device)
    data_gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    train_gen = torch.Generator(device=device).manual_seed(args.seed + 2)
    grid_z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(123)).to(device)
    nimg, step = 0, 0
    ckpt = out / "checkpoint.pt"
    if args.resume and ckpt.is_file():
        st = torch.load(ckpt, map_location=device, weights_only=True)
        G.load_state_dict(st["G"]); D.load_state_dict(st["D"]); G_ema.load_state_dict(st["G_ema"])
        opt_G.load_state_dict(st["opt_G"]); opt_D.load_state_dict(st["opt_D"])
        data_gen.set_state(st["data_gen"].cpu()); train_gen.set_state(st["train_gen"].cpu())
        nimg, step = int(st["nimg"]), int(st["step"])
        print(f"resumed from {ckpt} at {nimg / 1000:.1f} kimg")
    stream = data.stream(args.batch, 0, generator=data_gen)
    ema_nimg = 10 * args.batch / 32 * 1000
    total = int(args.kimg * 1000)
    next_snap = (nimg // int(args.snap * 1000) + 1) * int(args.snap * 1000)
    log = out / "log.csv"
    if not log.exists():
        log.write_text("kimg,seconds,loss_G,loss_D,r1,img_per_s\n")
    t_start, t_last, n_last = time.time(), time.time(), nimg
    bar = tqdm(total=total, initial=nimg, unit="img", unit_scale=True, desc="train StyleGAN2")
    stats = {"loss_G": 0.0, "loss_D": 0.0, "r1": 0.0}

    def checkpoint():
        state = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                 "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
                 "data_gen": data_gen.get_state(), "train_gen": train_gen.get_state(),
                 "nimg": torch.tensor(nimg), "step": torch.tensor(step), "config": json.dumps(vars(args))}
        torch.save(state, str(ckpt) + ".tmp")
        os.replace(str(ckpt) + ".tmp", ckpt)

    while nimg < total:
        real = next(stream)
        if real.shape[-1] != args.resolution:  # smaller test models: box-downsample the 64 px faces
            real = F.adaptive_avg_pool2d(real, args.resolution)
        # --- G step: non-saturating loss.
        G.requires_grad_(True); D.requires_grad_(False)
        fake = G.synthesis(make_ws(G, args.batch, args.mixing, train_gen, device), noise_mode="random",
                           fused_modconv=False, noise_generator=train_gen)
        loss_G = F.softplus(-D(fake)).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        # --- D step: logistic loss, plus lazy R1 on reals.
        G.requires_grad_(False); D.requires_grad_(True)
        with torch.no_grad():
            fake = G.synthesis(make_ws(G, args.batch, args.mixing, train_gen, device), noise_mode="random",
                               fused_modconv=False, noise_generator=train_gen)
        loss_D = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        if step % R1_INTERVAL == 0:
            real_ = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real_).sum(), real_, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            loss_D = loss_D + r1 * (gamma / 2) * R1_INTERVAL
            stats["r1"] = r1.item()
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        # --- EMA of G.
        nimg += args.batch
        step += 1
        beta = 0.5 ** (args.batch / max(min(ema_nimg, nimg * 0.05), 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        stats["loss_G"], stats["loss_D"] = loss_G.item(), loss_D.item()
        bar.update(args.batch)
        if step % 20 == 0:
            rate = (nimg - n_last) / max(time.time() - t_last, 1e-6)
            t_last, n_last = time.time(), nimg
            bar.set_postfix(G=f"{stats['loss_G']:.3f}", D=f"{stats['loss_D']:.3f}", img_s=f"{rate:.0f}")
        out_of_time = args.max_seconds is not None and time.time() - t_start > args.max_seconds
        if nimg >= next_snap or nimg >= total or out_of_time:
            next_snap += int(args.snap * 1000)
            checkpoint()
            save_grid(G_ema, grid_z, out / f"samples_{nimg:09d}img.png")
            rate = nimg / max(time.time() - t_start, 1e-6)
            with open(log, "a") as f:
                f.write(f"{nimg / 1000:.1f},{time.time() - t_start:.1f},{stats['loss_G']:.4f},"
                        f"{stats['loss_D']:.4f},{stats['r1']:.4f},{rate:.1f}\n")
            if out_of_time:
                print(f"stopping after {args.max_seconds:.0f} s at {nimg / 1000:.1f} kimg (resume with --resume)")
                break
    bar.close()
    export(G_ema, D, out, args.seed, args.w_avg_samples)
    return out


@torch.no_grad()
def export(G_ema: Generator, D: Discriminator, out: Path, seed: int = 0, w_avg_samples: int = 100_000) -> None:
    """w_avg from mapping samples, then G_ema and D in the project's safetensors formats."""
    gen = torch.Generator(device="cpu").manual_seed(seed + 3)
    total = torch.zeros(G_ema.w_dim, dtype=torch.float64, device=G_ema.w_avg.device)
    for start in range(0, w_avg_samples, 10_000):
        z = torch.randn(min(10_000, w_avg_samples - start), G_ema.z_dim, generator=gen).to(G_ema.w_avg.device)
        total += G_ema.mapping(z).double().sum(0)
    G_ema.mapping.w_avg.copy_((total / w_avg_samples).float())
    save_generator(G_ema, out / "generator.safetensors")
    save_discriminator(D, out / "discriminator.safetensors")
    print(f"exported {out / 'generator.safetensors'} and {out / 'discriminator.safetensors'}")


if __name__ == "__main__":
    train(parse_args())
