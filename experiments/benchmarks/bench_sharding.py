"""`latentspaces compare` as one process vs sharded over torchrun ranks, wall-clock seconds.

    python -m experiments.benchmarks.bench_sharding [--ranks 2] [--repeats 2] [-- extra compare flags]

Both ways run the same command on the same machine, alternating (single, sharded, single, ...),
each into a fresh output folder, and the median wall time of each is printed with the ratio
single / sharded. The single process uses all `--threads` (default: every core); each of the
`--ranks` processes gets threads / ranks (OMP_NUM_THREADS), so both use the same cores. The times
include starting Python and loading the model (once per process), as a user's run does. The
per-image MSE of the two ways is compared too (they invert the same chunks with the same seed).
Default work: 8 held-out targets in chunks of 2, spaces W and F/Z+, quick settings (100 steps),
no identity or perceptual metric: 8 chunk jobs to share. `--single-layers plain` runs the single
process with the layers' speed-ups off (`experiments.benchmarks.with_layers`), so the ratio is the
sharded fast run against the one-process run as it was before them. Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.rows import read_rows

DEFAULT_FLAGS = ["--quick", "--n-targets", "8", "--chunk", "2", "--spaces", "W,FZPlus", "--identity", "none",
                 "--perceptual", "none", "--device", "cpu"]


def run(cmd, threads: int, out: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    done = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def mse_by_row(out: Path) -> dict:
    return {(r["space"], r["target"]): float(r["mse"]) for r in read_rows(out / "space_comparison_per_image.csv")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=2, help="torchrun processes")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads in all (split over the ranks)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--single-layers", choices=["fast", "plain"], default="fast",
                    help="the single process's layers: the default (fast) or without the speed-ups (plain)")
    ap.add_argument("flags", nargs="*", help="compare flags (after --), replacing the defaults")
    args = ap.parse_args(argv)
    if args.threads % args.ranks:
        raise SystemExit(f"--threads {args.threads} does not split over {args.ranks} ranks")
    flags = args.flags or DEFAULT_FLAGS
    single = [sys.executable, "-m", "experiments.cli", "compare", *flags]
    if args.single_layers == "plain":
        single = [sys.executable, "-m", "experiments.benchmarks.with_layers", "plain", "compare", *flags]
    sharded = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.ranks}",
               "-m", "experiments.cli", "compare", *flags]
    times = {"single": [], "sharded": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            times["single"].append(run(single, args.threads, Path(tmp) / f"single{i}"))
            times["sharded"].append(run(sharded, args.threads // args.ranks, Path(tmp) / f"sharded{i}"))
        a, b = mse_by_row(Path(tmp) / "single0"), mse_by_row(Path(tmp) / "sharded0")
    if a.keys() != b.keys():
        raise SystemExit("the two ways wrote different (space, target) rows")
    diff = max(abs(a[k] - b[k]) for k in a)
    s, d = statistics.median(times["single"]), statistics.median(times["sharded"])
    print(f"{os.cpu_count()} cores; compare {' '.join(flags)}")
    print("| way | processes x threads | wall s (median of %d) | all runs |" % args.repeats)
    print("| --- | --- | ---: | --- |")
    print(f"| single ({args.single_layers} layers) | 1 x {args.threads} | {s:.1f} | {', '.join(f'{t:.1f}' for t in times['single'])} |")
    print(f"| torchrun | {args.ranks} x {args.threads // args.ranks} | {d:.1f} | "
          f"{', '.join(f'{t:.1f}' for t in times['sharded'])} |")
    print(f"single / sharded: {s / d:.2f}x; {len(a)} rows, max |MSE difference| {diff:.2e}")


if __name__ == "__main__":
    main()
