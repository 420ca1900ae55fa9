"""HybridInverter: 8 images inverted as one batch vs 8 single-image runs, seconds per step.

    python -m experiments.benchmarks.bench_batching [--steps 20] [--spaces WPlus,FZPlus] [--repeats 3]

On the default model and its shipped held-out targets. For each space both ways are timed in the
same process, alternating (batched, singles, batched, ...), median of `--repeats`; each timing is
a full `invert` of `--steps` steps (after one untimed warm-up run). Prints seconds per optimizer
step for the batch (all 8 images advance one step) and for the singles (8 runs, summed), and the
ratio singles / batched. Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import latentspaces as ls
from latentspaces.assets import heldout_targets
from optimizers import HybridInverter


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--spaces", default="WPlus,FZPlus")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    G = ls.load_generator("default")
    targets = heldout_targets(args.batch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.steps} steps")
    print("| space | batched s/step | 8 singles s/step | singles / batched |")
    print("| --- | ---: | ---: | ---: |")
    for name in args.spaces.split(","):
        inv = HybridInverter(ls.SPACES[name](G), steps=args.steps, lr=0.05, lambda_per=0, lambda_reg=0, progress=False)

        def batched():
            inv.invert(targets, init="mean")

        def singles():
            for i in range(args.batch):
                inv.invert(targets[i:i + 1], init="mean")

        batched()  # warm-up
        singles()
        tb, ts = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            batched()
            tb.append(time.perf_counter() - t)
            t = time.perf_counter()
            singles()
            ts.append(time.perf_counter() - t)
        b, s = statistics.median(tb) / args.steps, statistics.median(ts) / args.steps
        print(f"| {name} | {b:.4f} | {s:.4f} | {s / b:.2f} |")


if __name__ == "__main__":
    main()
