"""The checkpoint fuzzer's sandbox: a worker process that loads mutants, the outcome of each, the report.

`worker` reads mutant paths from stdin and loads each under an address-space and a time limit, printing
the outcome `_classify` gives it (the table is in `experiments.tools.fuzz_checkpoints`); `run_mutants`
feeds a worker (the command's hidden `--worker` mode) and restarts it after a crash or a hang; `fuzz`
makes and loads mutants in batches and counts the outcomes in a `Report`.
"""

from __future__ import annotations

import importlib
import json
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from experiments.tools.fuzzing.documents import FORMATS
from experiments.tools.fuzzing.mutations import make_mutants

OUTCOMES = ("loaded", "refused", "safety-net", "non-finite", "other", "hang", "memory")
FAILURES = ("safety-net", "non-finite", "other", "hang", "memory")


# ---------------------------------------------------------------------------------- the sandboxed worker
def _load_other(kind: str, path: str) -> None:
    """Load a non-generator file of the storage layer ('encoder' or 'discriminator')."""
    if kind == "encoder":
        from encoders import load_encoder
        load_encoder(path)
    elif kind == "discriminator":
        from latentspaces.discriminator import load_discriminator
        load_discriminator(path)
    else:
        raise ValueError(f"unknown reader {kind!r}")


def _classify(line: str) -> dict:
    import latentspaces as ls
    from latentspaces.errors import CheckpointError
    from latentspaces.generator.config import ConfigError, check_config
    kind, _, path = line.rpartition("::")  # 'encoder::path' loads with another reader of the storage layer
    try:
        if kind:
            _load_other(kind, path)
            return {"outcome": "loaded", "detail": ""}
        G = ls.load_generator(path)
    except CheckpointError as e:
        return {"outcome": "safety-net" if getattr(e, "safety_net", False) else "refused", "detail": str(e)[:300]}
    except MemoryError as e:
        return {"outcome": "memory", "detail": f"MemoryError {e}"[:300]}
    except Exception as e:
        memory = isinstance(e, RuntimeError) and "allocate" in str(e)
        return {"outcome": "memory" if memory else "other", "detail": f"{type(e).__name__}: {e}"[:300]}
    try:
        check_config(G.config)
        with torch.no_grad():
            images = G(torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(1)))
        finite = bool(torch.isfinite(images).all()) and bool(torch.isfinite(G.w_avg).all())
    except ConfigError as e:
        return {"outcome": "non-finite", "detail": f"invalid config: {e}"[:300]}
    return {"outcome": "loaded" if finite else "non-finite", "detail": "" if finite else "non-finite images"}


class _Timeout(BaseException):
    pass


def worker(limit_mb: int, timeout: float) -> None:
    """Read mutant paths from stdin, print one JSON line per path (outcome, detail)."""
    importlib.import_module("latentspaces")  # import before the limit: torch maps a lot of address space
    mapped = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + limit_mb * 2**20, resource.RLIM_INFINITY))
    torch.set_num_threads(1)

    def alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, alarm)
    for line in sys.stdin:
        path = line.strip()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            result = _classify(path)
        except _Timeout:
            result = {"outcome": "hang", "detail": f"over {timeout} s"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        print(json.dumps({"file": path.rpartition("::")[2], **result}), flush=True)


def run_mutants(paths: Sequence[Path], limit_mb: int = 2048, timeout: float = 20.0,
                reader: str = "generator") -> Dict[str, dict]:
    """Load every path in a sandboxed worker (restarted after a crash or a hang); {file name: result}.

    reader: 'generator' (ls.load_generator), 'encoder' (encoders.load_encoder) or 'discriminator'.
    """
    results: Dict[str, dict] = {}
    pending = [str(p) if reader == "generator" else f"{reader}::{p}" for p in paths]
    while pending:
        cmd = [sys.executable, "-m", "experiments.tools.fuzz_checkpoints", "--worker", "--limit-mb", str(limit_mb),
               "--timeout", str(timeout)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, cwd=Path(__file__).resolve().parents[3])
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        proc.stdin.write("".join(p + "\n" for p in pending))
        proc.stdin.close()
        done, hung = 0, False
        wait = timeout * 3 + 60  # the first file also pays for importing torch
        while done < len(pending):
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:  # the worker's own alarm did not fire: kill it
                proc.kill()
                hung = True
                break
            if line is None:
                break
            record = json.loads(line)
            results[Path(record.pop("file")).name] = record
            done += 1
            wait = timeout * 3
        proc.wait()
        if done < len(pending):  # the worker died (or hung past its own alarm) on pending[done]
            outcome = "hang" if hung else "memory"
            name = Path(pending[done].rpartition("::")[2]).name
            results[name] = {"outcome": outcome, "detail": f"worker exited with {proc.returncode}"}
            done += 1
        pending = pending[done:]
    return results


@dataclass
class Report:
    counts: Dict[str, int]
    by_format: Dict[str, Dict[str, int]]
    failures: List[dict]

    @property
    def tried(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return f"tried {self.tried}: " + ", ".join(f"{k} {self.counts[k]}" for k in OUTCOMES)


def fuzz(n: int, seed: int, limit_mb: int = 2048, timeout: float = 20.0, batch: int = 250,
         progress: Optional[Callable[[int], None]] = None) -> Report:
    """Make and load `n` mutants (in batches, in a temporary folder) and count the outcomes."""
    counts = {k: 0 for k in OUTCOMES}
    by_format = {f: {k: 0 for k in OUTCOMES} for f in FORMATS}
    failures: List[dict] = []
    with tempfile.TemporaryDirectory(prefix="ls-fuzz-") as tmp:
        for start in range(0, n, batch):
            folder = Path(tmp) / f"batch{start}"
            folder.mkdir()
            mutants = make_mutants(min(batch, n - start), seed * 1_000_003 + start, folder)
            results = run_mutants([folder / m.name for m in mutants], limit_mb, timeout)
            for m in mutants:
                r = results[m.name]
                counts[r["outcome"]] += 1
                by_format[m.fmt][r["outcome"]] += 1
                if r["outcome"] in FAILURES:
                    failures.append({"mutant": m.name, "mutations": m.description, **r})
            for p in folder.iterdir():
                p.unlink()
            if progress:
                progress(min(start + batch, n))
    return Report(counts, by_format, failures)
