"""`--workers N`: run a sharded command as N local ranks without typing `torchrun`.

On a CPU, N one-thread processes use the cores better than one process with N threads: the inversion
step's convolutions are small, and its hundreds of other operations each pay a thread-synchronisation
cost (BENCHMARKS.md, "Faster inversion": 2 x 1 thread did 1.3x the image-steps of 1 x 2 threads at the
full settings). `--workers N` starts `python -m torch.distributed.run --standalone --nproc_per_node N`
on the same command line, every rank with cores // N threads, and waits for it: the ranks shard the
jobs exactly as a `torchrun` the user starts (experiments.distributed), so the folder, the tables and
resuming are the same as with one process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import List

import torch

from ..argtypes import UsageError

LAUNCHED = "LATENTSPACES_WORKERS_LAUNCHED"   # set in the ranks' environment by `run_as_ranks`


def check_workers(workers: int, device: str = "cpu") -> bool:
    """Whether this process must start the ranks itself (True) or is already one of them / alone (False).

    UsageError, before anything starts, for --workers under a user's own torchrun and for more ranks than
    GPUs with a CUDA device (each rank takes GPU LOCAL_RANK).
    """
    in_world = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if workers > 1 and in_world and not os.environ.get(LAUNCHED):
        raise UsageError("--workers starts its own ranks; under torchrun leave it out (torchrun's --nproc_per_node "
                         "sets the number of processes)")
    if workers > 1 and not in_world and device.startswith("cuda") and workers > torch.cuda.device_count():
        raise UsageError(f"--workers {workers} with --device {device} needs one GPU per rank; this machine has "
                         f"{torch.cuda.device_count()}")
    return workers > 1 and not in_world


def check_compile(compile: bool, device: str) -> None:
    """--compile on a CPU needs a C++ compiler for torch.compile's inductor: UsageError before any work if none."""
    if compile and device == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise UsageError("--compile on a CPU needs a C++ compiler (g++, c++ or clang++) on PATH for torch.compile; "
                         "none was found: install one or leave --compile out (it measured no faster on a 2-core CPU)")


def run_as_ranks(argv: List[str], workers: int) -> int:
    """Run `latentspaces ARGV` as `workers` local ranks; the exit status of the launch (0: all ranks done)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, LAUNCHED: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}",
           "-m", "experiments.cli", *argv]
    print(f"latentspaces: running as {workers} local ranks of {env['OMP_NUM_THREADS']} thread(s) each (torchrun)",
          file=sys.stderr, flush=True)
    try:
        return subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:   # torchrun forwards the interrupt to the ranks; a rerun resumes the folder
        return 130
