"""Synthesis speed: fused (grouped-conv) vs non-fused (activation-scaling) modulated convolution.

    python -m experiments.benchmarks.bench_synthesis [--device cpu|cuda] [--batch 8] [--repeats 5]

Both paths are timed interleaved in one process (round-robin, median of repeats) for two
generators: the default-model shape (64 px, small channels) and a config-f-like 256 px
generator; forward only (no grad) and forward + backward to ws (an inversion step, G frozen).
Prints seconds per call and the non-fused/fused ratio. Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latentspaces import Generator

CONFIGS = {
    "default-64": dict(resolution=64, channels={4: 256, 8: 256, 16: 128, 32: 48, 64: 16}),
    "config-f-256": dict(resolution=256, channel_base=32768, channel_max=512),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} batch={args.batch}")
    print(f"{'config':<14} {'pass':<10} {'fused s':>9} {'non-fused s':>12} {'non-fused/fused':>16}")
    for name in args.configs:
        G = Generator(**CONFIGS[name]).to(device).eval().requires_grad_(False)
        gen = torch.Generator(device=device).manual_seed(0)
        ws = G.broadcast(G.mapping(torch.randn(args.batch, G.z_dim, device=device, generator=gen)))

        def forward(fused: bool) -> None:
            with torch.no_grad():
                G.synthesis(ws, fused_modconv=fused)

        def step(fused: bool) -> None:
            x = ws.detach().requires_grad_(True)
            G.synthesis(x, fused_modconv=fused).square().mean().backward()

        for label, fn in (("forward", forward), ("fwd+bwd", step)):
            for fused in (True, False):  # warm-up both
                fn(fused)
            times = {True: [], False: []}
            for _ in range(args.repeats):
                for fused in (True, False):
                    times[fused].append(_time(lambda: fn(fused), device))
            tf, tn = statistics.median(times[True]), statistics.median(times[False])
            print(f"{name:<14} {label:<10} {tf:>9.4f} {tn:>12.4f} {tn / tf:>16.2f}")


if __name__ == "__main__":
    main()
