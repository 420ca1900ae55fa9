"""Peak memory and time of one training step of each compensation head at 1024 px (batch 1): what batch fits.

    python -m experiments.benchmarks.bench_head_memory [--device cpu|cuda] [--batch 1] [--heads SDIC,HFGI,...]

For each head, in its own process (so that one head's peak does not hide another's): a random-weight
config-f generator (1024 px, channel multiplier 2, frozen), the released sizes of the head (width 1.0,
256 px input; GradStyle and ReGANIE at this project's defaults) over an untrained e4e-sized W+ encoder
(IR-SE50 backbone, 256 px input), then one step as the trainers take it: base ws (no grad), the head's
`compensate`, MSE to the target, backward into the head's parameters. Printed per head: parameters,
the memory before the step (generator, encoder, head) and the peak during it (CPU: the process's peak
resident set, `resource.getrusage`; CUDA: `torch.cuda.max_memory_allocated`), and seconds for the step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

HEADS = ("SDIC", "HFGI", "GradStyle", "ReGANIE")


def _rss_gib() -> float:
    """This process's peak resident set so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(name: str, device: torch.device, batch: int) -> dict:
    """One head's numbers (run in a fresh process by `main`)."""
    from encoders import HFGI, SDIC, GradStyle, ReGANIE, WPlusEncoder
    from latentspaces.generator import Generator

    torch.manual_seed(0)
    G = Generator(resolution=1024).to(device).eval().requires_grad_(False)
    base = WPlusEncoder.for_generator(G, backbone="ir_se50").to(device).eval().requires_grad_(False)
    build = {"SDIC": lambda: SDIC.for_generator(G), "HFGI": lambda: HFGI.for_generator(G),
             "GradStyle": lambda: GradStyle.for_generator(G, base), "ReGANIE": lambda: ReGANIE.for_generator(G)}
    head = build[name]().to(device).train().bind(base)
    x = torch.rand(batch, 3, 1024, 1024, device=device) * 2 - 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**30
    else:
        before = _rss_gib()
    t = time.perf_counter()
    with torch.no_grad():
        ws = base(x)
    loss = (head.compensate(G, x, ws).image - x).square().mean()
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = _rss_gib()
    seconds = time.perf_counter() - t
    finite = bool(torch.isfinite(loss)) and all(torch.isfinite(p.grad).all() for p in head.parameters()
                                                 if p.grad is not None)
    return {"head": name, "params_M": sum(p.numel() for p in head.parameters()) / 1e6, "before_GiB": before,
            "peak_GiB": peak, "seconds": seconds, "finite": finite, "layers": list(head.layers)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", default=",".join(HEADS), help="comma-separated subset of " + ",".join(HEADS))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)   # internal: measure this head and print JSON
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.one, torch.device(args.device), args.batch)))
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    if args.batch < 1:
        raise SystemExit(f"--batch {args.batch}: expected a positive number of images")
    heads = [h for h in args.heads.split(",") if h]
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        raise SystemExit(f"--heads: unknown {unknown}; choose from {HEADS}")
    print(f"one training step at 1024 px, batch {args.batch}, device {args.device} "
          f"({'CUDA max_memory_allocated' if args.device.startswith('cuda') else 'CPU peak RSS'})")
    print("| head | layers | parameters | memory before | peak during the step | s / step | finite |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for name in heads:
        done = subprocess.run([sys.executable, "-m", "experiments.benchmarks.bench_head_memory", "--one", name,
                               "--device", args.device, "--batch", str(args.batch)],
                              capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {r['head']} | {', '.join(r['layers']) or 'image space'} | {r['params_M']:.2f} M | "
              f"{r['before_GiB']:.2f} GiB | {r['peak_GiB']:.2f} GiB | {r['seconds']:.1f} | {r['finite']} |")


if __name__ == "__main__":
    main()
