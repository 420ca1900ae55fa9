"""Run folders: the folder lock, the settings behind OUT, and file fingerprints beside rows.

The rules every run folder keeps (the row files themselves: `experiments.rows`; summaries:
`experiments.summaries`; an inversion folder's chunk code files: `experiments.studies.inversions`):

- One run at a time: `hold_out_dir` takes an exclusive lock (flock) on OUT/.lock for the whole run and
  writes the holder (pid, host, start time, command) into it. A second run into the same OUT refuses at
  once with `RunFolderBusy`, naming the folder and the holder; it does not wait, since a second run with
  the same settings is almost always a mistake and a silent wait of hours is worse than a refusal.
  Under `torchrun` rank 0 takes the lock for the ranks of its run, and every rank learns whether it
  could (`World.from_main`), so all ranks go on or all stop. The kernel drops the lock when the holder
  dies; the file stays (removing it would let two runs lock two different files).
- File fingerprints beside their rows: every row records the first 16 hex digits of the sha256 of the
  file it was computed with or describes (`latentspaces.fingerprints.file_fingerprint`; e.g.
  `codes_sha256` for an inversion chunk's code file). On resume, work whose file is missing or differs
  is redone and its rows dropped (`file_problem`); a reader that cannot redo it refuses with
  `RunFolderError`, saying what to rerun. Rows written before fingerprints were recorded carry an empty
  one: their file is checked to exist and read, then its fingerprint is recorded.
- The settings behind OUT: `claim_out_dir` records them with the targets' fingerprints in
  `SETTINGS_FILE` (or refuses a rerun with other ones); it refuses, instead of claiming, a folder whose
  settings file is empty or garbled, or missing while OUT holds results. `write_settings` rewrites them
  atomically; `read_settings` reads them back.

The row, summary and image-file names (`append_rows`, `read_rows`, `write_rows`, `RowSchema`,
`mean_std_rows`, `save_image_file`, ...) are re-exported here, so older imports keep working.

Errors are one line naming the file: `RunFolderError` (a ValueError) for a folder that cannot be used
as it is, `RunFolderBusy` (one of them) for a folder another run holds; files that are not what they
claim to be (a truncated code file, a PNG passed as codes) raise `latentspaces.errors.CheckpointError`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from latentspaces.fingerprints import file_fingerprint, generator_fingerprint, image_fingerprints
from latentspaces.images import load_image_file, save_image_file
from latentspaces.storage import atomic_write_text

from .distributed import World
from .rows import RowSchema, RunFolderError, RunFolderWarning, append_rows, read_rows, write_rows, write_summary
from .summaries import mean_std_rows, plus_minus, write_mean_std_table

try:  # file locks; absent on Windows, where runs go unlocked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SETTINGS_FILE = "inversion_settings.json"
LOCK_FILE = ".lock"


class RunFolderBusy(RunFolderError):
    """Another run holds the folder's lock."""


# ---------------------------------------------------------------------------------- the folder lock
_held: Dict[str, Tuple[int, int]] = {}  # real path of OUT -> (descriptor of its locked .lock, nesting depth)


def _lock(out: Path) -> str:
    """Take OUT's lock (non-blocking) for this process; RunFolderBusy naming the holder when another has it."""
    out.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(out)
    if key in _held:  # this process holds it already (a study calling another)
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        return key
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            raise RunFolderBusy(f"{out} is in use by another run ({_describe_holder(holder)}; lock {path}): wait "
                                "for it to finish or choose another --out") from None
        except OSError as e:
            os.close(fd)
            raise RunFolderError(f"cannot lock {path} ({e}); run folders need a filesystem with POSIX file "
                                 "locks") from None
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    _held[key] = (fd, 1)
    return key


def _describe_holder(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on {h['host']}, started {h['started']}"
    except (ValueError, TypeError, KeyError):
        return "holder unknown: it has only just started"


def _unlock(key: str) -> None:
    fd, depth = _held.pop(key)
    if depth > 1:
        _held[key] = (fd, depth - 1)
        return
    os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def hold_out_dir(out: Path) -> Iterator[None]:
    """Hold OUT's run lock for the block (creating OUT); `RunFolderBusy` at once when another run holds it.

    Under `torchrun` rank 0 takes the lock and every rank raises when it could not (`World.from_main`).
    Nested calls in one process share the lock.
    """
    held: List[str] = []
    World.current().from_main(lambda: held.append(_lock(out)))
    try:
        yield
    finally:
        for key in held:
            _unlock(key)


# ---------------------------------------------------------------------------------- fingerprints
def file_problem(path: Path, recorded: str) -> Optional[str]:
    """Why `path` is not the file whose fingerprint `recorded` its rows hold, or None when it is.

    An empty `recorded` (rows written before fingerprints were) only asks for the file to exist.
    """
    if not path.is_file():
        return f"{path} is missing"
    got = file_fingerprint(path) if recorded else ""
    if got != recorded:
        return f"{path} is not the file its rows were computed with (sha256 {got}, recorded {recorded})"
    return None


# ---------------------------------------------------------------------------------- settings
def write_settings(path: Path, settings: Dict[str, object]) -> None:
    """Write the settings file (JSON) atomically."""
    atomic_write_text(path, json.dumps(settings, indent=1))


def _parse_settings(path: Path) -> Dict[str, object]:
    """The settings in `path`; `RunFolderError` naming it when it is empty or not a settings file."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        settings = json.loads(text)
        if not isinstance(settings, dict) or not isinstance(settings.get("targets"), list):
            raise ValueError("not an object with a list of target fingerprints")
    except ValueError as e:
        what = "empty" if not text.strip() else f"not a settings file ({e})"
        raise RunFolderError(f"{path} is {what}: the results in {path.parent} cannot be matched to their settings; "
                             f"delete {path.parent} (or its results) to start over, or choose another --out") from None
    return settings


def read_settings(out: Path) -> Dict[str, object]:
    """The settings recorded in OUT by `claim_out_dir`; FileNotFoundError naming the file when there are none,
    `RunFolderError` when the file is empty or garbled."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out} holds no inversions made by compare or identity-curves")
    return _parse_settings(path)


def _holds_results(path: Path) -> bool:
    if path.is_dir():
        return any(p.is_file() for p in path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def claim_out_dir(out: Path, settings: Dict[str, object], targets: torch.Tensor, results: Sequence[str] = (),
                  settings_file: str = SETTINGS_FILE, adopt: Sequence[str] = ()) -> None:
    """Record the inversion settings and targets [N, 3, R, R] behind OUT, or check that a resumed run uses the same.

    `compare` and `identity-curves` share the inversions in one OUT and resume them per chunk, so a run
    with other settings or other targets would silently mix results; it is refused instead. A later run
    may use fewer or more targets than an earlier one as long as the targets they share are the same.
    `results`: the files and folders of OUT (names) that belong to the settings; when one of them holds
    anything and the settings file is missing, the run is refused rather than claiming them, as it is
    when the settings file is empty or garbled. `settings_file`: the file's name (the compensation
    comparison keeps its own, `compensation_settings.json`). `adopt`: keys that settings files of older
    versions lack (the recipe's name, say); a file without one of them is resumed when every other key
    matches, and the key is written in.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / settings_file
    prints = image_fingerprints(targets)
    if path.exists():
        old = _parse_settings(path)
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v and not (k in adopt and k not in old)}
        if diff:
            said = ", ".join(f"{k}={a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise RunFolderError(f"{out} holds inversions made with other settings ({said}); resume with the "
                                 f"same settings or choose another output folder")
        known = old["targets"]
        for i, (a, b) in enumerate(zip(known, prints)):
            if a != b:
                raise RunFolderError(f"target {i} is not the image inverted as target {i} in {out} "
                                     f"(pixel sha256 {b} vs {a}); choose another output folder")
        if len(prints) <= len(known) and all(k in old for k in settings):
            return
        prints = prints if len(prints) > len(known) else known
    else:
        held = [name for name in results if _holds_results(out / name)]
        if held:
            raise RunFolderError(f"{out} holds results ({', '.join(held)}) but no {settings_file}: they cannot be "
                                 f"matched to this run's settings; delete them to start over, or choose another --out")
    write_settings(path, {**settings, "targets": prints})


__all__ = ["LOCK_FILE", "SETTINGS_FILE", "RowSchema", "RunFolderBusy", "RunFolderError", "RunFolderWarning",
           "append_rows", "claim_out_dir", "file_fingerprint", "file_problem", "generator_fingerprint",
           "hold_out_dir", "load_image_file", "mean_std_rows", "plus_minus", "read_rows",
           "read_settings", "save_image_file", "write_mean_std_table",
           "write_rows", "write_settings", "write_summary"]
