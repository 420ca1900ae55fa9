"""Train an e4e-style W+ encoder for a generator (default: the embedded 64 px model).

    python -m experiments.train_wplus_encoder --out runs/wplus_encoder
    python -m experiments.train_wplus_encoder --out runs/wplus_encoder --resume     # continue a killed run
    torchrun --nproc_per_node=4 -m experiments.train_wplus_encoder --out runs/wplus_encoder   # data parallel

e4e's recipe (Tov et al. 2021), scaled to the default domain:
- images: real domain images (the DCGAN faces) and, for `--synthetic-fraction` of each batch,
  generated images G(w^s) whose codes are known;
- loss: L2(G(E(x)), x) + lambda_per P(G(E(x)), x) + lambda_latent mean((E(x^s) - w^s)^2) on the
  generated part (a latent supervision e4e does not have: it shortens CPU training) +
  delta_reg * sum_i mean ||w_i - w_0||_2 + lambda_wd * softplus(-D_lat(E(x))) (optional);
- progressive training: only w0 until `--progressive-start`, then one more offset every
  `--progressive-every` steps (e4e: 20k and 2k);
- latent discriminator (`--lambda-wd` > 0): a 4-layer MLP on single w rows, real ones from the
  mapping network, non-saturating loss, R1 (gamma 10) every 16 steps.
Every `--snap` steps: an atomic checkpoint, a log.csv row with the held-out MSE of G(E(x)) on the
shipped held-out faces, the loss plot and a reconstruction grid. At the end: encoder.safetensors.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from encoders import WPlusEncoder, save_encoder
from encoders.wplus_encoder import EqualLinear
from experiments.training import (atomic_save, finish_run, generator_states, plot_log, rank_batch, rank_seed,
                                  resolve_perceptual, restore_generator, start_run, training_codes)


class LatentDiscriminator(nn.Module):
    """e4e's latent discriminator: w [N, w_dim] -> logit [N] through `layers` EqualLinear + LeakyReLU 0.2."""

    def __init__(self, w_dim: int = 512, layers: int = 4):
        super().__init__()
        mods = []
        for _ in range(layers):
            mods += [EqualLinear(w_dim, w_dim), nn.LeakyReLU(0.2)]
        mods.append(EqualLinear(w_dim, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w).squeeze(-1)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run directory (checkpoint, log, plots, export)")
    ap.add_argument("--generator", default="default", help="generator name or checkpoint path")
    ap.add_argument("--backbone", default=None, help="'small' (default for 'default') or 'ir_se50'")
    ap.add_argument("--style-channels", type=int, default=64, help="hidden channels of the style blocks")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lambda-per", type=float, default=0.8, help="perceptual weight (e4e: 0.8 LPIPS)")
    ap.add_argument("--perceptual", default="auto", help="'auto' | 'lpips-vgg' | 'lpips-alex' | 'd-features' | 'none'")
    ap.add_argument("--lambda-latent", type=float, default=1.0, help="latent supervision on generated images")
    ap.add_argument("--synthetic-fraction", type=float, default=0.5, help="share of each batch drawn from G")
    ap.add_argument("--delta-reg", type=float, default=2e-4, help="weight of the offsets' L2 norms (e4e: 2e-4)")
    ap.add_argument("--progressive-start", type=int, default=300, help="steps of w0-only training")
    ap.add_argument("--progressive-every", type=int, default=100, help="steps between newly enabled offsets")
    ap.add_argument("--lambda-wd", type=float, default=0.0, help="latent discriminator weight (e4e: 0.1; 0: off)")
    ap.add_argument("--r1", type=float, default=10.0, help="R1 weight of the latent discriminator")
    ap.add_argument("--mixing", type=float, default=0.5, help="style mixing of the generated training codes")
    ap.add_argument("--snap", type=int, default=250)
    ap.add_argument("--max-seconds", type=float, default=None, help="stop (with a checkpoint) after this long")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--half", action="store_true", help="export float16 weights")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def progressive_stage(step: int, start: int, every: int, num_ws: int) -> int:
    """Number of active offsets at `step`: 0 before `start`, then one more every `every` steps."""
    if step < start:
        return 0
    return min(num_ws - 1, 1 + (step - start) // max(every, 1))


@torch.no_grad()
def heldout_mse(encoder: WPlusEncoder, G, targets: torch.Tensor) -> float:
    encoder.eval()
    y = G.synthesis(encoder(targets), noise_mode="const")
    encoder.train()
    return (y - targets).square().mean().item()


def train(args) -> Path:
    from latentspaces.assets import heldout_targets
    from latentspaces.datasets import FaceSampler
    from latentspaces.images import save_images

    out, device, G, world = start_run(args)
    if G.resolution != 64 and args.synthetic_fraction < 1:
        raise SystemExit("real training images come from the 64 px DCGAN domain; for other generators pass "
                         "--synthetic-fraction 1 (generated images only)")
    backbone = args.backbone or ("small" if G.resolution <= 128 else "ir_se50")
    encoder = WPlusEncoder.for_generator(G, backbone=backbone, style_channels=args.style_channels).to(device).train()
    perceptual = resolve_perceptual(args.perceptual, G, device)
    D_lat = LatentDiscriminator(G.w_dim).to(device) if args.lambda_wd > 0 else None
    world.broadcast_(encoder, *([D_lat] if D_lat is not None else []))
    batch = rank_batch(world, args.batch)
    opt = torch.optim.Adam(encoder.parameters(), lr=args.lr)
    opt_d = torch.optim.Adam(D_lat.parameters(), lr=2e-5) if D_lat is not None else None
    gen = torch.Generator().manual_seed(rank_seed(world, args.seed + 1))
    data_gen = torch.Generator(device=device).manual_seed(rank_seed(world, args.seed + 2))
    faces = FaceSampler(device) if args.synthetic_fraction < 1 else None
    heldout = heldout_targets(16).to(device) if G.resolution == 64 else None
    n_syn = int(round(batch * args.synthetic_fraction))
    step, ckpt, log = 0, out / "checkpoint.pt", out / "log.csv"
    t_prev = 0.0
    if args.resume and ckpt.is_file():
        st = torch.load(ckpt, map_location=device, weights_only=True)
        encoder.load_state_dict(st["encoder"]); opt.load_state_dict(st["opt"])
        if D_lat is not None and "D_lat" in st:
            D_lat.load_state_dict(st["D_lat"]); opt_d.load_state_dict(st["opt_d"])
        restore_generator(world, gen, st["gen"], ckpt); restore_generator(world, data_gen, st["data_gen"], ckpt)
        step, t_prev = int(st["step"]), float(st["seconds"])
        if world.main:
            print(f"resumed from {ckpt} at step {step}")
    if world.main and (step == 0 or not log.exists()):
        log.write_text("step,seconds,loss,mse,perceptual,latent,delta,wd,heldout_mse,stage\n")
    t0 = time.time()
    sums = dict.fromkeys(["loss", "mse", "per", "lat", "delta", "wd"], 0.0)
    n_sum = 0

    def checkpoint():
        gens = generator_states(world, gen), generator_states(world, data_gen)  # a collective: all ranks call this
        if not world.main:
            return
        state = {"encoder": encoder.state_dict(), "opt": opt.state_dict(), "gen": gens[0],
                 "data_gen": gens[1], "step": torch.tensor(step),
                 "seconds": torch.tensor(t_prev + time.time() - t0), "config": json.dumps(vars(args))}
        if D_lat is not None:
            state["D_lat"], state["opt_d"] = D_lat.state_dict(), opt_d.state_dict()
        atomic_save(state, ckpt)

    bar = tqdm(total=args.steps, initial=step, desc="train W+ encoder", unit="step", disable=not world.main)
    while step < args.steps:
        stage = progressive_stage(step, args.progressive_start, args.progressive_every, G.num_ws)
        encoder.progressive_stage = stage
        with torch.no_grad():
            parts, ws_syn = [], None
            if n_syn > 0:
                ws_syn = training_codes(G, n_syn, args.mixing, gen)
                parts.append(G.synthesis(ws_syn, noise_mode="const"))
            if batch - n_syn > 0:
                z = torch.randn(batch - n_syn, 100, generator=data_gen, device=device)
                parts.append(faces.from_z(z))
            x = torch.cat(parts)
        ws = encoder(x)
        y = G.synthesis(ws, noise_mode="const")
        mse = (y - x).square().mean()
        per = perceptual(y, x).mean() if perceptual is not None else torch.zeros((), device=device)
        lat = (ws[:n_syn] - ws_syn).square().mean() if ws_syn is not None else torch.zeros((), device=device)
        deltas = WPlusEncoder.deltas(ws)[:, :stage]
        delta = deltas.norm(dim=2).mean(dim=0).sum() if stage > 0 else torch.zeros((), device=device)
        loss = mse + args.lambda_per * per + args.lambda_latent * lat + args.delta_reg * delta
        wd = torch.zeros((), device=device)
        if D_lat is not None:
            D_lat.requires_grad_(False)
            wd = F.softplus(-D_lat(ws.reshape(-1, G.w_dim))).mean()
            loss = loss + args.lambda_wd * wd
        if not torch.isfinite(loss):
            raise RuntimeError(f"W+ encoder loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        world.average_gradients_(encoder.parameters())
        opt.step()
        if D_lat is not None:  # latent discriminator step: real ws from the mapping network
            D_lat.requires_grad_(True)
            with torch.no_grad():
                real = G.mapping(torch.randn(batch * 4, G.z_dim, generator=gen).to(device))
            fake = ws.detach().reshape(-1, G.w_dim)
            loss_d = F.softplus(D_lat(fake)).mean() + F.softplus(-D_lat(real)).mean()
            if step % 16 == 0:
                real_ = real.requires_grad_(True)
                (g,) = torch.autograd.grad(D_lat(real_).sum(), real_, create_graph=True)
                loss_d = loss_d + args.r1 / 2 * g.square().sum(1).mean() * 16
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            world.average_gradients_(D_lat.parameters())
            opt_d.step()
        step += 1
        for k, v in (("loss", loss), ("mse", mse), ("per", per), ("lat", lat), ("delta", delta), ("wd", wd)):
            sums[k] += v.item()
        n_sum += 1
        bar.update(1)
        bar.set_postfix(mse=f"{mse.item():.4f}", stage=stage)
        out_of_time = world.any(args.max_seconds is not None and time.time() - t0 > args.max_seconds)
        if step % args.snap == 0 or step == args.steps or out_of_time:
            m = world.mean({k: v / max(n_sum, 1) for k, v in sums.items()})  # the whole batch's losses
            sums, n_sum = dict.fromkeys(sums, 0.0), 0
            checkpoint()
            if world.main:
                h = heldout_mse(encoder, G, heldout) if heldout is not None else math.nan
                with open(log, "a") as f:
                    f.write(f"{step},{t_prev + time.time() - t0:.1f},{m['loss']:.6f},{m['mse']:.6f},{m['per']:.6f},"
                            f"{m['lat']:.6f},{m['delta']:.4f},{m['wd']:.4f},{h:.6f},{stage}\n")
                plot_log(log, out / "loss.png", columns=("loss", "heldout_mse"))
                if heldout is not None:
                    with torch.no_grad():
                        encoder.eval()
                        rec = G.synthesis(encoder(heldout[:8]), noise_mode="const")
                        encoder.train()
                    save_images(torch.cat([heldout[:8], rec]), out / "reconstructions.png", nrow=8)
            if out_of_time and world.main:
                print(f"stopping after {args.max_seconds:.0f} s at step {step} (continue with --resume)")
            if out_of_time:
                break
    bar.close()
    encoder.progressive_stage = stage  # offsets past the last trained stage stay off in the export
    encoder.eval()
    if world.main:
        meta = {"generator": args.generator, "steps": step, "batch": args.batch, "processes": world.size,
                "backbone": backbone, "perceptual": getattr(perceptual, "name", "none"),
                "synthetic_fraction": args.synthetic_fraction, "progressive_stage": encoder.progressive_stage,
                "trained_by": "experiments.train_wplus_encoder"}
        save_encoder(encoder, out / "encoder.safetensors", meta=meta, half=args.half)
        print(f"wrote {out / 'encoder.safetensors'} ({step} steps)")
    finish_run(world)
    return out


def main(argv=None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
