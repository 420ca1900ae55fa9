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
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from experiments.tools.fuzzing.documents import FORMATS
from encoders import COMPENSATION_HEADS
from latentspaces import assets
from experiments.tools.fuzzing.mutations import make_mutants

OUTCOMES = ("loaded", "refused", "safety-net", "non-finite", "bad-message", "other", "hang", "memory")
FAILURES = ("safety-net", "non-finite", "bad-message", "other", "hang", "memory")
PEAK_LIMIT_MB = 1536   # memory a load may take above the worker's resident size before it answers
READERS = ("generator", "encoder", "discriminator", "directions", "code")


# ---------------------------------------------------------------------------------- the sandboxed worker
def _load_other(kind: str, path: str) -> str:
    """Load a file that is not a generator with its reader; '' when what loaded is usable, else why not."""
    if kind == "encoder":
        from encoders import load_encoder
        load_encoder(path)   # runs its own output check (encoders.probing)
    elif kind == "discriminator":
        from latentspaces.discriminator import load_discriminator
        load_discriminator(path)
    elif kind == "directions":
        from latentspaces.directions.io import load_directions
        vectors = [d.vector for d in load_directions(path)]
        if not all(v.is_floating_point() and bool(torch.isfinite(v).all()) and v.numel() for v in vectors):
            return "a direction that is empty, not floating point or not finite"
    elif kind == "code":
        from latentspaces.spaces.code import read_code_file
        codes = read_code_file(path)
        if not all(v.is_floating_point() and bool(torch.isfinite(v).all()) for _, v in codes.code.items()):
            return "codes that are not finite floats"
    else:
        raise ValueError(f"unknown reader {kind!r}; readers: {READERS}")
    return ""


def _message_problem(message: str, path: str) -> str:
    """'' when a refusal's message is one line of at most 300 characters naming the file, else what is wrong."""
    if "\n" in message:
        return "message spans several lines"
    if len(message) > 300:
        return f"message of {len(message)} characters"
    if path not in message and Path(path).name not in message:
        return "message does not name the file"
    return ""


def _classify(line: str) -> dict:
    import latentspaces as ls
    from latentspaces.checkpoints.validation import MAX_ABS_IMAGE
    from latentspaces.errors import CheckpointError
    from latentspaces.generator.config import ConfigError, check_config
    kind, _, path = line.rpartition("::")  # 'encoder::path' loads with another reader
    try:
        if kind:
            problem = _load_other(kind, path)
            return {"outcome": "non-finite" if problem else "loaded", "detail": problem}
        G = ls.load_generator(path)
    except CheckpointError as e:
        problem = _message_problem(str(e), path)
        if problem:
            return {"outcome": "bad-message", "detail": f"{problem}: {str(e)[:240]}"}
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
    if not finite:
        return {"outcome": "non-finite", "detail": "non-finite images"}
    if float(images.abs().max()) > MAX_ABS_IMAGE:
        return {"outcome": "non-finite", "detail": f"implausible images (|x| up to {float(images.abs().max()):.3g})"}
    return {"outcome": "loaded", "detail": ""}


def _memory_kb(field: str) -> int:
    return int(open("/proc/self/status").read().split(f"{field}:")[1].split()[0])


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
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # resets the peak resident size (VmHWM) to the current one
        before = _memory_kb("VmRSS")
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            result = _classify(path)
        except _Timeout:
            result = {"outcome": "hang", "detail": f"over {timeout} s"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        peak_mb = (_memory_kb("VmHWM") - before) / 1024
        if peak_mb > PEAK_LIMIT_MB and result["outcome"] not in ("hang", "memory"):
            result = {"outcome": "memory", "detail": f"peak {peak_mb:.0f} MB before answering ({result['outcome']})"}
        print(json.dumps({"file": path.rpartition("::")[2], "peak_mb": round(peak_mb, 1), **result}), flush=True)


def run_mutants(paths: Sequence[Path], limit_mb: int = 2048, timeout: float = 20.0,
                reader: str = "generator") -> Dict[str, dict]:
    """Load every path in a sandboxed worker (restarted after a crash or a hang); {file name: result}.

    reader: 'generator' (ls.load_generator), 'encoder' (encoders.load_encoder), 'discriminator',
    'directions' (load_directions) or 'code' (read_code_file).
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


# The families of the fuzz: (family name shown in the report, reader, share of the mutants). The generator
# formats come from `make_mutants`; encoders, heads and the discriminator are the shipped files damaged by
# `make_storage_mutants`; directions and codes are `experiments.tools.fuzzing.families`.
STORAGE_SOURCES = (("encoder", assets.DEFAULT_WPLUS_ENCODER), ("encoder", assets.DEFAULT_F_ENCODER),
                   *(("head", assets.default_head(h)) for h in COMPENSATION_HEADS),
                   ("discriminator", assets.DEFAULT_DISCRIMINATOR))
FAMILY_SHARES = {"generator": 0.5, "storage": 0.2, "directions": 0.15, "codes": 0.15}


@dataclass
class Report:
    counts: Dict[str, int]
    by_format: Dict[str, Dict[str, int]]
    failures: List[dict]
    peak_mb: Dict[str, float] = field(default_factory=dict)   # family -> largest memory one load took

    @property
    def tried(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return f"tried {self.tried}: " + ", ".join(f"{k} {self.counts[k]}" for k in OUTCOMES)


def _family_batch(family: str, count: int, seed: int, folder: Path) -> List[tuple]:
    """[(mutant, reader, row of the report)] of `count` mutants of one family, written under `folder`."""
    from experiments.tools.fuzzing.families import make_code_mutants, make_direction_mutants
    from experiments.tools.fuzzing.mutations import make_storage_mutants
    from latentspaces.assets import asset_path
    folder.mkdir()
    if family == "generator":
        return [(m, "generator", m.fmt) for m in make_mutants(count, seed, folder)]
    if family == "directions":
        return [(m, "directions", "directions") for m in make_direction_mutants(count, seed, folder)]
    if family == "codes":
        return [(m, "code", "codes") for m in make_code_mutants(count, seed, folder)]
    out = []
    for k, (row, name) in enumerate(STORAGE_SOURCES):   # shipped encoders, heads and the discriminator in turn
        share = count // len(STORAGE_SOURCES) + (k < count % len(STORAGE_SOURCES))
        sub = folder / name
        sub.mkdir()
        reader = "discriminator" if row == "discriminator" else "encoder"
        for m in make_storage_mutants(asset_path(name), share, seed + k, sub):
            (sub / m.name).rename(folder / f"{name}_{m.name}")   # one folder, names unique across the sources
            m.name = f"{name}_{m.name}"
            out.append((m, reader, row))
        sub.rmdir()
    return out


def fuzz(n: int, seed: int, limit_mb: int = 2048, timeout: float = 20.0, batch: int = 250,
         progress: Optional[Callable[[int], None]] = None, families: Sequence[str] = ("generator",)) -> Report:
    """Make and load `n` mutants (in batches, in a temporary folder) and count the outcomes.

    families: which of `FAMILY_SHARES` to draw, in proportion to their shares (the generator formats alone
    by default, as the test suite's seeded fuzz does).
    """
    shares = {f: FAMILY_SHARES[f] for f in families}
    rows = [*FORMATS] if "generator" in families else []
    rows += [r for r in ("encoder", "head", "discriminator") if "storage" in families] + \
        [f for f in ("directions", "codes") if f in families]
    counts = {k: 0 for k in OUTCOMES}
    by_format = {f: {k: 0 for k in OUTCOMES} for f in rows}
    peak: Dict[str, float] = {f: 0.0 for f in families}
    failures: List[dict] = []
    done = 0
    with tempfile.TemporaryDirectory(prefix="ls-fuzz-") as tmp:
        for start in range(0, n, batch):
            size = min(batch, n - start)
            plan = {f: int(round(size * w / sum(shares.values()))) for f, w in shares.items()}
            plan[families[0]] += size - sum(plan.values())
            for family, count in plan.items():
                if count <= 0:
                    continue
                folder = Path(tmp) / f"batch{start}_{family}"
                mutants = _family_batch(family, count, seed * 1_000_003 + start, folder)
                for reader in sorted({r for _, r, _ in mutants}):
                    mine = [(m, row) for m, r, row in mutants if r == reader]
                    results = run_mutants([folder / m.name for m, _ in mine], limit_mb, timeout, reader=reader)
                    for m, row in mine:
                        r = results[m.name]
                        counts[r["outcome"]] += 1
                        by_format[row][r["outcome"]] += 1
                        peak[family] = max(peak[family], float(r.get("peak_mb", 0.0)))
                        if r["outcome"] in FAILURES:
                            failures.append({"mutant": m.name, "family": row, "mutations": m.description, **r})
                shutil.rmtree(folder)
            done += size
            if progress:
                progress(done)
    return Report(counts, by_format, failures, peak)
