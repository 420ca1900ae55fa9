"""Train an F encoder (BDInvert's base-code encoder) on generated pairs only (seed 002, Eq. 2).

    python -m experiments.train_f_encoder --out runs/f_encoder                 # default generator
    python -m experiments.train_f_encoder --out runs/f_encoder --resume        # continue a killed run
    torchrun --nproc_per_node=4 -m experiments.train_f_encoder --out runs/f_encoder   # data parallel: --batch split over 4

Each step draws z (with style mixing), w^s = mapping(z), the base code f^s = G's own output of the F
layer and x = G(f^s, w^s_{M+}) (the F-space image: the coarse RGB skip is dropped). The loss is

    ||G(E(x), w^s_{M+}) - x||^2 + lambda_enc * P(G(E(x), w^s_{M+}), x)

with P the perceptual distance (LPIPS when its backbone is installed, else the default model's
D-features distance; `--perceptual none` for pixels only). BDInvert: batch 16, Adam 1e-3, 10k steps,
x0.1 every 2k. Every `--snap` steps: an atomic checkpoint, a row in log.csv with the held-out
initialisation MSE (E(x) with mean detail codes, on the shipped held-out faces), the loss plot and a
reconstruction grid. At the end: `encoder.safetensors` in the project's format.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

import latentspaces as ls
from encoders import FEncoder, save_encoder
from experiments.training import (atomic_save, finish_run, generator_states, plot_log, rank_batch, rank_seed,
                                  resolve_perceptual, restore_generator, start_run, training_codes)
from latentspaces.spaces.f import default_f_layer


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run directory (checkpoint, log, plots, export)")
    ap.add_argument("--generator", default="default", help="generator name or checkpoint path")
    ap.add_argument("--layer", default=None, help="F layer (default: the F spaces' default for G)")
    ap.add_argument("--widths", type=json.loads, default=None,
                    help="JSON list of the three block widths (default [128, 256, 512]; [32, 64, 128] for 'default')")
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--decay-every", type=int, default=2000, help="steps between x0.1 learning-rate decays")
    ap.add_argument("--lambda-enc", type=float, default=1.0, help="weight of the perceptual term")
    ap.add_argument("--perceptual", default="auto", help="'auto' | 'lpips-vgg' | 'lpips-alex' | 'd-features' | 'none'")
    ap.add_argument("--mixing", type=float, default=0.5, help="style-mixing probability of the training codes")
    ap.add_argument("--snap", type=int, default=250, help="steps between checkpoints / log rows")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop (with a checkpoint) after this long")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    ap.add_argument("--half", action="store_true", help="export float16 weights")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


@torch.no_grad()
def heldout_init_mse(encoder: FEncoder, space, targets: torch.Tensor) -> float:
    """MSE of G(E(x), mean detail codes) against the held-out targets: what HybridInverter starts from."""
    encoder.eval()
    imgs = space.synthesize(encoder.init_code(space, targets))
    encoder.train()
    return (imgs - targets).square().mean().item()


def train(args) -> Path:
    out, device, G, world = start_run(args)
    layer = args.layer or default_f_layer(G)
    widths = args.widths or ([32, 64, 128] if args.generator == "default" else [128, 256, 512])
    encoder = FEncoder.for_generator(G, layer, widths).to(device).train()
    world.broadcast_(encoder)
    batch = rank_batch(world, args.batch)
    space = ls.FWPlus(G, layer=layer)
    perceptual = resolve_perceptual(args.perceptual, G, device)
    opt = torch.optim.Adam(encoder.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=args.decay_every, gamma=0.1)
    gen = torch.Generator().manual_seed(rank_seed(world, args.seed + 1))
    from latentspaces.assets import heldout_targets

    heldout = heldout_targets(16).to(device) if G.resolution == 64 else None
    step, ckpt, log = 0, out / "checkpoint.pt", out / "log.csv"
    if args.resume and ckpt.is_file():
        st = torch.load(ckpt, map_location=device, weights_only=True)
        encoder.load_state_dict(st["encoder"]); opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        restore_generator(world, gen, st["gen"], ckpt); step = int(st["step"])
        if world.main:
            print(f"resumed from {ckpt} at step {step}")
    if world.main and (not log.exists() or step == 0):
        log.write_text("step,seconds,loss,mse,perceptual,heldout_mse,lr\n")
    t0, t_run = time.time(), float(torch.load(ckpt, weights_only=True)["seconds"]) if step and ckpt.is_file() else 0.0
    sums = {"loss": 0.0, "mse": 0.0, "per": 0.0, "n": 0}

    def checkpoint():
        gens = generator_states(world, gen)  # every rank's data stream (a collective: all ranks call this)
        if not world.main:
            return
        state = {"encoder": encoder.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                 "gen": gens, "step": torch.tensor(step), "seconds": torch.tensor(t_run + time.time() - t0),
                 "config": json.dumps(vars(args))}
        atomic_save(state, ckpt)

    bar = tqdm(total=args.steps, initial=step, desc="train F encoder", unit="step", disable=not world.main)
    while step < args.steps:
        with torch.no_grad():
            ws = training_codes(G, batch, args.mixing, gen)
            f_s = space.feature_of(ws)
            x = G.synthesis.from_feature(f_s, ws, layer, noise_mode="const")
        y = G.synthesis.from_feature(encoder(x), ws, layer, noise_mode="const")
        mse = (y - x).square().mean()
        per = perceptual(y, x).mean() if perceptual is not None else torch.zeros((), device=device)
        loss = mse + args.lambda_enc * per
        if not torch.isfinite(loss):
            raise RuntimeError(f"F encoder loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        world.average_gradients_(encoder.parameters())
        opt.step()
        sched.step()
        step += 1
        sums["loss"] += loss.item(); sums["mse"] += mse.item(); sums["per"] += per.item(); sums["n"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{mse.item():.4f}")
        out_of_time = world.any(args.max_seconds is not None and time.time() - t0 > args.max_seconds)
        if step % args.snap == 0 or step == args.steps or out_of_time:
            n = max(sums.pop("n"), 1)
            m = world.mean({k: v / n for k, v in sums.items()})  # the whole batch's losses
            sums = {"loss": 0.0, "mse": 0.0, "per": 0.0, "n": 0}
            checkpoint()
            if world.main:
                h = heldout_init_mse(encoder, space, heldout) if heldout is not None else math.nan
                with open(log, "a") as f:
                    f.write(f"{step},{t_run + time.time() - t0:.1f},{m['loss']:.6f},{m['mse']:.6f},"
                            f"{m['per']:.6f},{h:.6f},{sched.get_last_lr()[0]:.2e}\n")
                plot_log(log, out / "loss.png")
                if heldout is not None:
                    save_reconstructions(encoder, space, heldout[:8], out / "reconstructions.png")
            if out_of_time and world.main:
                print(f"stopping after {args.max_seconds:.0f} s at step {step} (continue with --resume)")
            if out_of_time:
                break
    bar.close()
    encoder.eval()
    if world.main:
        meta = {"generator": args.generator, "layer": layer, "steps": step, "batch": args.batch,
                "processes": world.size, "perceptual": getattr(perceptual, "name", "none"),
                "lambda_enc": args.lambda_enc, "trained_by": "experiments.train_f_encoder"}
        save_encoder(encoder, out / "encoder.safetensors", meta=meta, half=args.half)
        print(f"wrote {out / 'encoder.safetensors'} ({step} steps)")
    finish_run(world)
    return out


@torch.no_grad()
def save_reconstructions(encoder, space, targets: torch.Tensor, path: Path) -> None:
    from latentspaces.images import save_images

    encoder.eval()
    recon = space.synthesize(encoder.init_code(space, targets))
    encoder.train()
    save_images(torch.cat([targets, recon]), path, nrow=len(targets))


def main(argv=None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
