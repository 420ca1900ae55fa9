"""Does encoder initialisation help? MSE vs step on the held-out targets for four starts.

    python -m experiments.studies.encoder_init [--n 64] [--steps 200] [--recipe quick] [--out runs/encoder_init]

Runs HybridInverter with an inversion recipe (`optimizers.recipes`; default the quick one, MSE only at lr
0.05, for 200 steps; `--recipe paper` adds its perceptual and anchor terms) from:
  F/Z+ initialised by the F encoder ('default-f'),  F/Z+ from its mean,
  W+ initialised by the W+ encoder ('default-wplus'), W+ from w_avg,
and prints the mean ± std held-out MSE at the start and at a few steps, plus seconds per image.
Writes encoder_init.csv (mean MSE per step and run) to --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

import torch

from encoders import load_encoder
from latentspaces.assets import heldout_targets
from latentspaces.assets import DEFAULT_F_ENCODER, DEFAULT_GENERATOR, DEFAULT_WPLUS_ENCODER
from latentspaces.checkpoints import load_generator
from latentspaces.spaces import build_space
from optimizers import RECIPES, HybridInverter

from ..argtypes import positive_float, positive_int
from ..rows import write_rows

RUNS = [("FZPlus", "encoder", DEFAULT_F_ENCODER), ("FZPlus", "mean", None), ("WPlus", "encoder", DEFAULT_WPLUS_ENCODER),
        ("WPlus", "mean", None)]


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m experiments.studies.encoder_init", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=positive_int, default=64, help="held-out targets (1 .. 64)")
    ap.add_argument("--recipe", choices=tuple(RECIPES), default="quick", help="inversion recipe (default quick)")
    ap.add_argument("--steps", type=positive_int, default=200)
    ap.add_argument("--lr", type=positive_float, default=None, help="default: the recipe's")
    ap.add_argument("--out", default="runs/encoder_init")
    args = ap.parse_args(argv)
    recipe = RECIPES[args.recipe].replace(steps=args.steps, **({} if args.lr is None else {"lr": args.lr}))
    G = load_generator(DEFAULT_GENERATOR)
    targets = heldout_targets(args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    marks = sorted({0, 25, 50, 100, args.steps - 1} & set(range(args.steps)))
    curves, lines = {}, []
    for space_name, init, enc_name in RUNS:
        space = build_space(space_name, G, **recipe.space_options(space_name))
        enc = load_encoder(enc_name) if enc_name else None
        res = HybridInverter.from_recipe(space, recipe.replace(init=init), encoder=enc, progress=True).invert(targets)
        mse = res.history["mse"]                            # [steps, N], before each step
        final = (res.images - targets).square().flatten(1).mean(1)
        label = f"{space_name} ({enc_name or 'mean'} init)"
        curves[label] = torch.cat([mse.mean(1), final.mean()[None]])
        cells = " | ".join(f"{mse[s].mean():.4f}" for s in marks)
        lines.append(f"| {label} | {cells} | {final.mean():.4f} ± {final.std():.4f} | {res.seconds / args.n:.3f} |")
    header = " | ".join(f"step {s}" for s in marks)
    print(f"\n{args.n} held-out targets; recipe {recipe.describe()}\n")
    print(f"| run | {header} | after {args.steps} steps | s / image |")
    print("| --- |" + " ---: |" * (len(marks) + 2))
    print("\n".join(lines))
    rows = [{"step": s, **{label: f"{float(c[s]):.6g}" for label, c in curves.items()}} for s in range(args.steps + 1)]
    write_rows(out / "encoder_init.csv", rows, ["step", *curves])


if __name__ == "__main__":
    main()
