"""Run a `latentspaces` command with the layers' speed-ups on or off, for side-by-side benchmarks.

    python -m experiments.benchmarks.with_layers plain compare --quick --out runs/x
    python -m experiments.benchmarks.with_layers fast compare --quick --out runs/y

"plain": NCHW convolutions, and bias, activation and gain as separate passes (the layers before the
speed-ups); "fast": channels-last convolutions on CPU and folded epilogues (the library's default).
Both give the same results to float32 rounding (`latentspaces.generator.ops.layer_options`). Used by
`bench_sharding --single-layers plain` to time a whole command in a subprocess of its own.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from latentspaces.generator.ops import layer_options

from .bench_inversion_step import VARIANTS

LAYERS = {name: VARIANTS[name][0] for name in ("plain", "fast")}   # layer_options of each


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in LAYERS:
        raise SystemExit(f"usage: python -m experiments.benchmarks.with_layers {{{','.join(LAYERS)}}} COMMAND [ARGS]")
    from experiments.cli import main as cli_main

    with layer_options(device_type="cpu", **LAYERS[argv[0]]):
        cli_main(argv[1:])


if __name__ == "__main__":
    main()
