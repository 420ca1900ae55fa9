"""Train an SDIC compensation head (DIPN + DICN) over a frozen W+ encoder.

    python -m experiments.train_sdic --out runs/sdic                    # default generator + 'default-wplus'
    python -m experiments.train_sdic --out runs/sdic --resume           # continue a killed run
    torchrun --nproc_per_node=4 -m experiments.train_sdic --out runs/sdic   # data parallel: --batch split over 4

Each step: real domain images x (DCGAN faces), W = E(x) from the frozen base encoder, x0 = G(W),
then SDIC's compensated image y with W' and F^ (encoders/sdic.py). Loss (SDIC's joint loss):

    l2 * ||y - x||^2 + per * P(y, x) + edit * (0.8 mean((F^ - G_l)^2) + 0.2 mean((W' - W)^2))

P: LPIPS when its backbone is installed, else the default model's D-features distance. The paper's
0.1 * ID(ArcFace) term needs a differentiable identity network; none ships offline, so it is off
unless one is added (dlib's descriptor is not differentiable). The paper trains with Ranger at 1e-3,
batch 2, 200k steps; here Adam 1e-3, batch 8, a few thousand steps on the 64 px default.
Every `--snap` steps: checkpoint, log.csv row (held-out MSE of the base and of SDIC), loss plot,
reconstruction grid. At the end: sdic.safetensors in the project's encoder format.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from encoders import load_encoder, save_encoder
from encoders.sdic import SDIC
from experiments.training import (atomic_save, finish_run, generator_states, plot_log, rank_batch, rank_seed,
                                  resolve_perceptual, restore_generator, start_run)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--generator", default="default")
    ap.add_argument("--base-encoder", default="default-wplus", help="W+ encoder name or file (frozen)")
    ap.add_argument("--layer", default=None, help="compensated layer (default: encoders.sdic.default_sdic_layer)")
    ap.add_argument("--width", type=float, default=0.5, help="channel multiplier (1.0: the paper's sizes)")
    ap.add_argument("--input-size", type=int, default=32, help="side of the network input (paper: 256)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lambda-l2", type=float, default=1.0)
    ap.add_argument("--lambda-per", type=float, default=0.8)
    ap.add_argument("--lambda-edit", type=float, default=0.5, help="weight of 0.8 map + 0.2 code distances")
    ap.add_argument("--perceptual", default="auto")
    ap.add_argument("--snap", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--half", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def sdic_losses(out: dict, x: torch.Tensor, ws: torch.Tensor, perceptual, args) -> dict:
    """The joint loss terms (scalars) of one batch."""
    l2 = (out["image"] - x).square().mean()
    per = perceptual(out["image"], x).mean() if perceptual is not None else torch.zeros((), device=x.device)
    edit = 0.8 * out["residual"].square().mean() + 0.2 * (out["ws"] - ws).square().mean()
    total = args.lambda_l2 * l2 + args.lambda_per * per + args.lambda_edit * edit
    return {"loss": total, "l2": l2, "per": per, "edit": edit}


@torch.no_grad()
def heldout_mse(sdic: SDIC, base, G, targets: torch.Tensor) -> tuple:
    sdic.eval()
    ws = base(targets)
    x0 = G.synthesis(ws, noise_mode="const")
    y = sdic.compensate(G, targets, ws, x0)["image"]
    sdic.train()
    return (x0 - targets).square().mean().item(), (y - targets).square().mean().item(), x0, y


def train(args) -> Path:
    from latentspaces.assets import heldout_targets
    from latentspaces.datasets import FaceSampler
    from latentspaces.images import save_images

    out, device, G, world = start_run(args)
    if G.resolution != 64:
        raise SystemExit("the SDIC trainer draws real images from the 64 px DCGAN domain (default generator)")
    base = load_encoder(args.base_encoder, device=device).eval().requires_grad_(False)
    sdic = SDIC.for_generator(G, args.layer, args.input_size, args.width).to(device).train()
    world.broadcast_(sdic)
    batch = rank_batch(world, args.batch)
    perceptual = resolve_perceptual(args.perceptual, G, device)
    opt = torch.optim.Adam(sdic.parameters(), lr=args.lr)
    faces = FaceSampler(device)
    data_gen = torch.Generator(device=device).manual_seed(rank_seed(world, args.seed + 7))
    heldout = heldout_targets(16).to(device)
    step, t_prev, ckpt, log = 0, 0.0, out / "checkpoint.pt", out / "log.csv"
    if args.resume and ckpt.is_file():
        st = torch.load(ckpt, map_location=device, weights_only=True)
        sdic.load_state_dict(st["sdic"]); opt.load_state_dict(st["opt"])
        restore_generator(world, data_gen, st["data_gen"], ckpt)
        step, t_prev = int(st["step"]), float(st["seconds"])
        if world.main:
            print(f"resumed from {ckpt} at step {step}")
    if world.main and (step == 0 or not log.exists()):
        log.write_text("step,seconds,loss,l2,perceptual,edit,heldout_mse_base,heldout_mse\n")
    t0 = time.time()
    sums, n_sum = dict.fromkeys(["loss", "l2", "per", "edit"], 0.0), 0

    def checkpoint():
        gens = generator_states(world, data_gen)  # every rank's data stream (a collective: all ranks call this)
        if not world.main:
            return
        state = {"sdic": sdic.state_dict(), "opt": opt.state_dict(), "data_gen": gens,
                 "step": torch.tensor(step), "seconds": torch.tensor(t_prev + time.time() - t0),
                 "config": json.dumps(vars(args))}
        atomic_save(state, ckpt)

    bar = tqdm(total=args.steps, initial=step, desc="train SDIC", unit="step", disable=not world.main)
    while step < args.steps:
        with torch.no_grad():
            x = faces.from_z(torch.randn(batch, 100, generator=data_gen, device=device))
            ws = base(x)
            x0 = G.synthesis(ws, noise_mode="const")
        terms = sdic_losses(sdic.compensate(G, x, ws, x0), x, ws, perceptual, args)
        if not torch.isfinite(terms["loss"]):
            raise RuntimeError(f"SDIC loss became {terms['loss'].item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        world.average_gradients_(sdic.parameters())
        opt.step()
        step += 1
        for k in sums:
            sums[k] += terms[k].item()
        n_sum += 1
        bar.update(1)
        bar.set_postfix(l2=f"{terms['l2'].item():.4f}")
        out_of_time = world.any(args.max_seconds is not None and time.time() - t0 > args.max_seconds)
        if step % args.snap == 0 or step == args.steps or out_of_time:
            m = world.mean({k: v / max(n_sum, 1) for k, v in sums.items()})  # the whole batch's losses
            sums, n_sum = dict.fromkeys(sums, 0.0), 0
            checkpoint()
            if world.main:
                base_mse, mse, x0h, yh = heldout_mse(sdic, base, G, heldout)
                with open(log, "a") as f:
                    f.write(f"{step},{t_prev + time.time() - t0:.1f},{m['loss']:.6f},{m['l2']:.6f},{m['per']:.6f},"
                            f"{m['edit']:.6f},{base_mse:.6f},{mse:.6f}\n")
                plot_log(log, out / "loss.png", columns=("loss", "heldout_mse"))
                save_images(torch.cat([heldout[:8], x0h[:8], yh[:8]]), out / "reconstructions.png", nrow=8)
            if out_of_time and world.main:
                print(f"stopping after {args.max_seconds:.0f} s at step {step} (continue with --resume)")
            if out_of_time:
                break
    bar.close()
    sdic.eval()
    if world.main:
        meta = {"generator": args.generator, "base_encoder": str(args.base_encoder), "steps": step,
                "batch": args.batch, "processes": world.size, "perceptual": getattr(perceptual, "name", "none"),
                "trained_by": "experiments.train_sdic",
                "identity_loss": "off (no differentiable identity network offline)"}
        save_encoder(sdic, out / "sdic.safetensors", meta=meta, half=args.half)
        print(f"wrote {out / 'sdic.safetensors'} ({step} steps)")
    finish_run(world)
    return out


def main(argv=None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
