"""One HybridInverter step, eager vs the speed switches, and the cost table across batch and resolution.

    python -m experiments.benchmarks.bench_inversion_step [--space FZPlus] [--batch 8] [--steps 20] [--repeats 5]
    python -m experiments.benchmarks.bench_inversion_step --cost-table [--resolutions 64,256,1024]

Default mode: the full settings of `latentspaces compare` (lr 0.01, lambda_per 1 with the D-features
distance, mean initialisation) on the default model and its shipped held-out targets. Every variant
runs `invert` for `--steps` steps, the variants interleaved round-robin `--repeats` times after one
untimed warm-up each (which is where `torch.compile` compiles; its seconds are printed), and the
median seconds per step is compared with the baseline's. Variants (`--variants`, see VARIANTS):
"plain" is the baseline, the layers as they were before the speed-ups (NCHW convolutions; bias,
activation and gain as three passes); "channels-last" and "folded" switch on one speed-up each
(`latentspaces.generator.ops.layer_options`); "fast" is both, the library's default on CPU (on CUDA
the default is "folded": channels-last is not on there); "fast+compile" and "fast+bf16" add
HybridInverter's compile / autocast switches; on CUDA only, "folded+reduce-overhead" and
"fast+reduce-overhead" (torch.compile's CUDA graphs) and "folded+fp16". Each variant then runs
`--diff-steps` (100) steps from the same start and its images are compared with plain's (max
|difference|, images in [-1, 1]), and its MSE to the targets printed (`--diff-steps 1200`: after the
full schedule). Adam divides by the gradients' running magnitude, so float rounding in near-zero
gradient components grows over the steps, and two plain runs with another thread count differ too
(printed as the reference row). The perceptual term's share of the fast step is measured as
1 - (step without it) / (step with it). The last line is
`optimized/eager speedup: N.NNx; max image diff after 100 steps: E`, where eager is "plain" and the
optimized variant is `--optimized` (default: "fast").

--cost-table: seconds per image-step (synthesis + D-features perceptual term + MSE, forward and
backward to W+ codes, Adam step; an invert of 0 steps subtracted) and peak memory per image against
batch size, at 64 px (the default
model) and 256 / 1024 px (config-f channels, random weights, a config-f-like discriminator with random
weights for the perceptual term). Each (resolution, batch) runs in its own subprocess so that its peak
resident memory (ru_maxrss) is its own; peak per image = (peak - resident after loading) / batch.
Batches whose estimated memory exceeds `--memory-gb` are skipped and marked so. Results go in
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict

import torch

import latentspaces as ls
from latentspaces.assets import heldout_targets
from latentspaces.discriminator import Discriminator, load_default_discriminator
from latentspaces.generator.ops import layer_options
from latentspaces.metrics.d_features import DiscriminatorFeatures
from optimizers import HybridInverter

# variant -> (generator.ops.layer_options, HybridInverter switches). "plain" is the baseline of the ratios:
# the layers as they were before the speed-ups (NCHW convolutions; bias, activation and gain as three passes).
VARIANTS: Dict[str, tuple] = {
    "plain": ({"channels_last": False, "folded_epilogues": False}, {}),
    "channels-last": ({"channels_last": True, "folded_epilogues": False}, {}),
    "folded": ({"channels_last": False, "folded_epilogues": True}, {}),
    "fast": ({"channels_last": True, "folded_epilogues": True}, {}),
    "fast+compile": ({"channels_last": True, "folded_epilogues": True}, {"compile": True}),
    "fast+bf16": ({"channels_last": True, "folded_epilogues": True}, {"autocast": "bfloat16"}),
    # GPU only: CUDA graphs through torch.compile, float16 autocast; "folded" is the library's CUDA default
    # (channels-last is on by default on CPU only).
    "folded+reduce-overhead": ({"channels_last": False, "folded_epilogues": True}, {"compile": "reduce-overhead"}),
    "fast+reduce-overhead": ({"channels_last": True, "folded_epilogues": True}, {"compile": "reduce-overhead"}),
    "folded+fp16": ({"channels_last": False, "folded_epilogues": True}, {"autocast": "float16"}),
}
CUDA_ONLY = tuple(v for v, (_, switches) in VARIANTS.items()
                  if switches.get("compile") == "reduce-overhead" or switches.get("autocast") == "float16")
COST_CONFIGS = {
    64: None,  # the default model
    256: dict(resolution=256, channel_base=32768, channel_max=512),
    1024: dict(resolution=1024, channel_base=32768, channel_max=512),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_comparison(args) -> None:
    device = torch.device(args.device)
    names = [v for v in args.variants.split(",")]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or args.optimized not in names or "plain" not in names:
        raise SystemExit(f"--variants must name 'plain' and --optimized among {sorted(VARIANTS)}, got {names}")
    if device.type != "cuda" and any(v in CUDA_ONLY for v in names):
        raise SystemExit(f"--variants {','.join(v for v in names if v in CUDA_ONLY)} need --device cuda "
                         "(CUDA graphs, float16 autocast)")
    G = ls.load_generator("default").to(device)
    per = DiscriminatorFeatures(load_default_discriminator().to(device))
    targets = heldout_targets(args.batch).to(device)

    def inverter(variant: str, steps: int, lambda_per: float = 1.0) -> HybridInverter:
        return HybridInverter(ls.SPACES[args.space](G), steps=steps, lr=0.01, lambda_per=lambda_per,
                              lambda_reg=0.0, perceptual=per, progress=False, **VARIANTS[variant][1])

    def run(variant: str, inv: HybridInverter) -> torch.Tensor:
        with layer_options(device_type=device.type, **VARIANTS[variant][0]):
            return inv.invert(targets, init="mean").images

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; space {args.space}, "
          f"batch {args.batch}, full settings; {args.steps} steps per timing, median of {args.repeats}")
    print(f"eager = 'plain' (NCHW convolutions; bias, activation and gain as separate passes: the layers before "
          f"the speed-ups); optimized = {args.optimized!r}")
    timed = {v: (v, inverter(v, args.steps)) for v in names}
    if "fast" not in timed:   # the perceptual term's share is measured on the fast step
        timed["fast"] = ("fast", inverter("fast", args.steps))
    timed["fast, no perceptual"] = ("fast", inverter("fast", args.steps, lambda_per=0.0))
    warmup = {}
    for name, (v, inv) in timed.items():
        t = time.perf_counter()
        run(v, inv)
        _sync(device)
        warmup[name] = time.perf_counter() - t
    times = {name: [] for name in timed}
    for _ in range(args.repeats):
        for name, (v, inv) in timed.items():
            _sync(device)
            t = time.perf_counter()
            run(v, inv)
            _sync(device)
            times[name].append((time.perf_counter() - t) / args.steps)
    per_step = {name: statistics.median(ts) for name, ts in times.items()}

    final = {v: run(v, inverter(v, args.diff_steps)) for v in names}
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)   # the reference: plain with another summation order
    final["other threads"] = run("plain", inverter("plain", args.diff_steps))
    torch.set_num_threads(threads)
    diff = {v: (final[v] - final["plain"]).abs().max().item() for v in final}
    mse = {v: (final[v] - targets).square().mean().item() for v in final}

    k = args.diff_steps
    print(f"| variant | s / step | plain / variant | first call s | max image diff after {k} steps | MSE after {k} steps |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for v in names:
        print(f"| {v} | {per_step[v]:.4f} | {per_step['plain'] / per_step[v]:.2f}x | {warmup[v]:.1f} | {diff[v]:.2e} | "
              f"{mse[v]:.6f} |")
    print(f"| plain, {2 if threads == 1 else 1} thread(s) instead of {threads} (reference) | | | | "
          f"{diff['other threads']:.2e} | {mse['other threads']:.6f} |")
    with_per, without = per_step["fast"], per_step["fast, no perceptual"]
    print(f"perceptual term (D-features, forward + backward): {1 - without / with_per:.0%} of the fast step "
          f"({with_per - without:.4f} of {with_per:.4f} s)")
    o = args.optimized
    print(f"MSE after {k} steps relative to plain's: " + ", ".join(f"{v} {mse[v] / mse['plain'] - 1:+.2%}" for v in final
                                                                   if v != "plain"))
    print(f"optimized/eager speedup: {per_step['plain'] / per_step[o]:.2f}x; max image diff after {k} steps: {diff[o]:.2e}")


def _cost_generator(resolution: int) -> tuple:
    """(G, D) for the cost table: the default pair at 64 px, config-f shapes with random weights above."""
    if COST_CONFIGS[resolution] is None:
        return ls.load_generator("default"), load_default_discriminator()
    torch.manual_seed(0)
    G = ls.Generator(**COST_CONFIGS[resolution]).eval().requires_grad_(False)
    res_list = [2**k for k in range(2, resolution.bit_length())]   # 4 ... R, config-f's channel rule
    D = Discriminator(resolution, {r: min(32768 // r, 512) for r in res_list}).eval().requires_grad_(False)
    return G, D


def cost_one(resolution: int, batch: int, steps: int, device: str) -> dict:
    """Seconds per image-step and peak resident memory per image for one (resolution, batch)."""
    dev = torch.device(device)
    G, D = _cost_generator(resolution)
    G, D = G.to(dev), D.to(dev)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():   # targets: images of the generator itself, at its resolution
        targets = G(torch.randn(batch, G.z_dim, generator=gen).to(dev)).clamp(-1, 1)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base_cuda = torch.cuda.memory_allocated(dev)
    inv = HybridInverter(ls.WPlus(G), steps=1, lr=0.01, lambda_per=1.0, lambda_reg=0.0,
                         perceptual=DiscriminatorFeatures(D), progress=False)
    inv.invert(targets, init="mean")   # warm-up (allocator, kernels)

    def timed(n: int) -> float:
        inv.steps = n
        _sync(dev)
        t = time.perf_counter()
        inv.invert(targets, init="mean")
        _sync(dev)
        return time.perf_counter() - t

    # An invert of 0 steps is the set-up and the final synthesis: subtracted, so only steps are counted.
    seconds = max(timed(steps) - timed(0), 0.0) / steps
    out = {"resolution": resolution, "batch": batch, "s_per_image_step": seconds / batch,
           "rss_mb_per_image": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024 / batch}
    if dev.type == "cuda":
        out["cuda_mb_per_image"] = (torch.cuda.max_memory_allocated(dev) - base_cuda) / 2**20 / batch
    return out


def cost_table(args) -> None:
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; WPlus, "
          "D-features perceptual term, forward + backward + Adam")
    print("| resolution | batch | s / image-step | peak MB / image | steps timed |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    known_mb = {}
    for res in [int(r) for r in args.resolutions.split(",")]:
        for batch in [int(b) for b in args.batches.split(",")]:
            if res in known_mb and known_mb[res] * batch > args.memory_gb * 1024:
                print(f"| {res} | {batch} | skipped: about {known_mb[res] * batch / 1024:.0f} GB > --memory-gb "
                      f"{args.memory_gb:g} | | |")
                continue
            # about as much work per timing as --cost-steps steps at 64 px and batch 8, never fewer than 2 steps
            steps = max(2, min(args.cost_steps, round(args.cost_steps * (64 / res) ** 2 * 8 / batch)))
            cmd = [sys.executable, "-m", "experiments.benchmarks.bench_inversion_step", "--cost-one",
                   f"{res},{batch},{steps}", "--device", args.device]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"| {res} | {batch} | failed: {done.stderr.strip().splitlines()[-1][:80]} | | |")
                break
            row = json.loads(done.stdout.strip().splitlines()[-1])
            mb = row.get("cuda_mb_per_image", row["rss_mb_per_image"])
            known_mb[res] = max(known_mb.get(res, 0.0), mb)
            print(f"| {res} | {batch} | {row['s_per_image_step']:.4f} | {mb:.0f} | {steps} |", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--space", default="FZPlus", choices=sorted(ls.SPACES))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variants", default="plain,channels-last,folded,fast", help=f"among {sorted(VARIANTS)}")
    ap.add_argument("--optimized", default="fast", help="the variant of the last line (default: the library's default)")
    ap.add_argument("--diff-steps", type=int, default=100, help="steps before images and MSE are compared")
    ap.add_argument("--cost-table", action="store_true")
    ap.add_argument("--resolutions", default="64,256,1024")
    ap.add_argument("--batches", default="1,2,4,8,16,32,64")
    ap.add_argument("--cost-steps", type=int, default=20, help="steps timed at 64 px and batch 8 (fewer above)")
    ap.add_argument("--memory-gb", type=float, default=16.0, help="skip batches estimated above this")
    ap.add_argument("--cost-one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cost_one:
        res, batch, steps = (int(v) for v in args.cost_one.split(","))
        print(json.dumps(cost_one(res, batch, steps, args.device)))
    elif args.cost_table:
        cost_table(args)
    else:
        step_comparison(args)


if __name__ == "__main__":
    main()
