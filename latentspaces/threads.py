"""How many compute threads this process uses: chosen for the machine as it is, not as it was built.

PyTorch starts as many intra-op threads as the machine has cores. Two such processes on one machine
(two experiments, a test run beside a run, torchrun ranks) run more threads than cores, and OpenMP's
threads spin while they wait for each other at every parallel region: measured on a 2-core CPU, two
`compare --quick` runs at once each ran about 30x slower than one alone, not 2x (BENCHMARKS.md,
"Threads"). `choose_threads` picks, in this order:

1. `requested` (the `--threads` flag, or the argument of `use_threads`);
2. OMP_NUM_THREADS when it is set (the user's or torchrun's own choice);
3. the CPUs this process may run on (its affinity mask, not the machine's count), split over the
   local ranks (LOCAL_WORLD_SIZE under torchrun), then lowered to what the rest of the machine leaves
   free: the threads of other processes that are runnable now (`machine_load`) are subtracted, and a
   one-line note says so.

`use_threads(n=None)` applies the choice to torch (intra-op threads) and returns it with the note.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class ThreadChoice:
    """The number of threads and, when the choice differs from the machine's CPUs, why (one line, else '')."""

    threads: int
    note: str = ""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def machine_load(samples: int = 5, interval: float = 0.05) -> float:
    """The threads of other processes that want a CPU now: the runnable count of /proc/loadavg (which
    includes this process's running thread, taken off), the median of `samples` reads `interval` s apart.
    Where /proc is missing, the 1-minute load average less this process's share (`own_load`). The
    average alone lags: a run that has just ended still counts for a minute, one just started does not."""
    counts = []
    for k in range(samples):
        try:
            running = int(open("/proc/loadavg").read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            break
        counts.append(max(0, running - 1))
        if k + 1 < samples:
            time.sleep(interval)
    if counts:
        return float(sorted(counts)[len(counts) // 2])
    try:
        return max(0.0, os.getloadavg()[0] - own_load())
    except (AttributeError, OSError):
        return 0.0


def own_load() -> float:
    """This process's own share of the load average: its CPU seconds over its lifetime (at least the
    average's minute), so a long-busy interpreter (a notebook, a test run) does not count itself as
    another's work. 0 where /proc does not say when the process started."""
    try:
        start_ticks = float(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    lifetime = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    cpu = sum(os.times()[:2])
    return max(0.0, cpu / max(lifetime, 60.0))


def choose_threads(requested: Optional[int] = None) -> ThreadChoice:
    """The intra-op threads for this process (see the module docstring)."""
    cpus = usable_cpus()
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {requested!r}")
        note = (f"{requested} threads on {cpus} usable CPUs: they will wait for each other" if requested > cpus
                else "")
        return ThreadChoice(requested, note)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            return ThreadChoice(max(1, int(env)))
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS={env!r} is not a whole number") from None
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    share = max(1, cpus // ranks)
    if ranks > 1:   # torchrun's ranks load the machine together: their own load is not another's
        return ThreadChoice(share, f"{share} thread(s) per rank: {cpus} CPUs over {ranks} local ranks")
    load = machine_load()   # the others' runnable threads
    free = max(1, math.floor(cpus - load + 0.5))
    if free < share:
        return ThreadChoice(free, f"the machine is busy ({load:.0f} runnable threads of other processes on {cpus} CPUs): using "
                                  f"{free} thread(s) of {share}; --threads N (or OMP_NUM_THREADS) to choose")
    return ThreadChoice(share)


def use_threads(threads: Optional[int] = None) -> ThreadChoice:
    """Choose the threads (`choose_threads`) and set torch's intra-op threads to them; returns the choice."""
    choice = choose_threads(threads)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice


__all__ = ["ThreadChoice", "choose_threads", "machine_load", "usable_cpus", "use_threads"]
