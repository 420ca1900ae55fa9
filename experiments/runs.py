"""Run folders: the files an experiment leaves in OUT, written so that a run resumes and never mixes.

One module for every experiment's plumbing, and the rules every run folder keeps:

- One run at a time: `hold_out_dir` takes an exclusive lock (flock) on OUT/.lock for the whole run and
  writes the holder (pid, host, start time, command) into it. A second run into the same OUT refuses at
  once with `RunFolderBusy`, naming the folder and the holder; it does not wait, since a second run with
  the same settings is almost always a mistake and a silent wait of hours is worse than a refusal.
  Under `torchrun` rank 0 takes the lock for the ranks of its run, and every rank learns whether it
  could (`World.from_main`), so all ranks go on or all stop. The kernel drops the lock when the holder
  dies; the file stays (removing it would let two runs lock two different files).
- CSV rows, whole lines only: `append_rows` appends under a lock on the CSV itself (so ranks of one run
  append exactly one header), as one write of whole lines, flushed and fsync'd; it first cuts a torn
  tail (a last line without its newline: a killed write, a full disk) and refuses a file whose header
  is not `fields`. `write_rows` rewrites a CSV atomically (temp file, fsync, rename).
- Reading is forgiving, never silent: `read_rows` drops a torn last line and rows with the wrong number
  of fields; with a `RowSchema` it also drops rows whose numbers do not parse and keeps one row per key
  (the last written), each with a `RunFolderWarning` that says how many and why. The studies then
  redo what was dropped and rewrite the CSV, so a folder holds each key once.
- File fingerprints beside their rows: every row records the first 16 hex digits of the sha256 of the
  file it was computed with or describes (`file_fingerprint`; e.g. `codes_sha256` for an inversion
  chunk's code file). On resume, work whose file is missing or differs is redone and its rows dropped
  (`file_problem`); a reader that cannot redo it (`load_codes` with `checksums`) refuses with
  `RunFolderError`, saying what to rerun. Rows written before fingerprints were recorded carry an empty
  one: their file is checked to exist and read, then its fingerprint is recorded.
- The settings behind OUT: `claim_out_dir` records them with the targets' fingerprints in
  `SETTINGS_FILE` (or refuses a rerun with other ones); it refuses, instead of claiming, a folder whose
  settings file is empty or garbled, or missing while OUT holds results. `write_settings` rewrites them
  atomically; `read_settings` reads them back.
- Chunk code files, codes/{Space}_{start}.safetensors: `save_chunk`, `chunk_path`, `load_codes`
  (the latentspaces.code format; files of earlier runs, without a format header, still load).
- Image files of a run (uint8 [N, 3, R, R]): `save_image_file`, `load_image_file`.
- Summaries: `mean_std_rows` (mean and std per space or method), `write_summary` (their CSV),
  `write_mean_std_table` (CSV + Markdown table of 'mean ± std' cells, `plus_minus`).

Errors are one line naming the file: `RunFolderError` (a ValueError) for a folder that cannot be used
as it is, `RunFolderBusy` (one of them) for a folder another run holds; files that are not what they
claim to be (a truncated code file, a PNG passed as codes) raise `latentspaces.errors.CheckpointError`.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import io
import json
import os
import re
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

from latentspaces.fingerprints import generator_fingerprint
from latentspaces.io import IMAGES_FORMAT, atomic_path, atomic_write_text, load_tensors, save_tensors, to_uint8
from latentspaces.spaces import Code, read_code_file

from .distributed import World

try:  # file locks; absent on Windows, where runs go unlocked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SETTINGS_FILE = "inversion_settings.json"
LOCK_FILE = ".lock"


class RunFolderError(ValueError):
    """A run folder that cannot be used as it is; the message names the file and what to do."""


class RunFolderBusy(RunFolderError):
    """Another run holds the folder's lock."""


class RunFolderWarning(UserWarning):
    """Rows dropped from a run folder's CSV (torn, malformed or repeated); the run redoes their work."""


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


# ---------------------------------------------------------------------------------- CSV rows
@dataclass(frozen=True)
class RowSchema:
    """The columns of one CSV of a run folder, and what makes a row of it whole."""

    fields: Tuple[str, ...]          # the columns, in the order written
    key: Tuple[str, ...]             # the columns that identify a row: a later row with the same key replaces it
    ints: Tuple[str, ...] = ()       # columns that must parse as int (normalised to str(int(value)))
    floats: Tuple[str, ...] = ()     # columns that must parse as float ('nan' does)

    @property
    def required(self) -> Tuple[str, ...]:
        """The columns a file must have (others missing from an older file read as '')."""
        return tuple(dict.fromkeys(self.key + self.ints + self.floats))


def _warn_dropped(path: Path, what: str, examples: List[str]) -> None:
    more = f", and {len(examples) - 1} more" if len(examples) > 1 else ""
    warnings.warn(f"{path}: dropped {len(examples)} {what} ({examples[0]}{more}); their work is redone",
                  RunFolderWarning, stacklevel=3)


def read_rows(path: Path, schema: Optional[RowSchema] = None) -> List[dict]:
    """The whole rows of a CSV as dicts of strings ([] when the file does not exist).

    A torn last line (no newline) and rows with the wrong number of fields are dropped. With `schema`,
    rows whose numbers do not parse are dropped too, missing optional columns read as '', and of rows
    with one key the last is kept (in the place it was written). Each drop warns (`RunFolderWarning`).
    A file without the schema's required columns raises `RunFolderError`.
    """
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    if text and not text.endswith("\n"):
        cut = text.rfind("\n") + 1
        _warn_dropped(path, "torn last line", [repr(text[cut:][:60])])
        text = text[:cut]
    records = list(csv.reader(io.StringIO(text, newline="")))
    if not records:
        return []
    header, bad = records[0], []
    if schema is not None:
        missing = [k for k in schema.required if k not in header]
        if missing:
            raise RunFolderError(f"{path} lacks the columns {missing} (it has {header}); it was not written by this "
                                 "run's command: move it away and rerun to redo its rows")
    rows: Dict[object, dict] = {}
    repeated = 0
    for line, rec in enumerate(records[1:], 2):
        if not rec:
            continue
        if len(rec) != len(header):
            bad.append(f"line {line}: {len(rec)} fields, not {len(header)}")
            continue
        row = dict(zip(header, rec))
        key: object = line
        if schema is not None:
            try:
                for k in schema.ints:
                    row[k] = str(int(row[k]))
                for k in schema.floats:
                    float(row[k])
            except ValueError as e:
                bad.append(f"line {line}: {e}")
                continue
            for k in schema.fields:
                row.setdefault(k, "")
            key = tuple(row[k] for k in schema.key)
        repeated += rows.pop(key, None) is not None  # the last row of a key, in the place it was written
        rows[key] = row
    if bad:
        _warn_dropped(path, "malformed row(s)", bad)
    if repeated:
        warnings.warn(f"{path}: {repeated} row(s) repeated the key of an earlier one; the last of each is kept",
                      RunFolderWarning, stacklevel=2)
    return list(rows.values())


def _csv_text(rows: List[dict], fields: Sequence[str], header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields))
    if header:
        w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _cut_torn_tail(fd: int, path: Path) -> int:
    """Truncate the file to its last newline when it does not end in one; returns the new size."""
    size = end = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    while end > 0:
        begin = max(0, end - 65536)
        block = os.pread(fd, end - begin, begin)
        i = block.rfind(b"\n")
        if i >= 0:
            end = begin + i + 1
            break
        end = begin
    torn = os.pread(fd, min(60, size - end), end)
    os.ftruncate(fd, end)
    _warn_dropped(path, "torn last line", [repr(torn.decode("utf-8", "replace"))])
    return end


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def append_rows(path: Path, rows: List[dict], fields: Sequence[str]) -> None:
    """Append whole rows to a CSV (header when empty) and fsync: finished work is on disk before the next starts.

    The file is locked while it is written (POSIX), so processes sharding one run (`experiments.distributed`)
    append whole rows and exactly one header. A torn tail is cut first (`_cut_torn_tail`); a file whose
    header is not `fields` raises `RunFolderError`.
    """
    header = _csv_text([], fields).encode()
    data = _csv_text(rows, fields, header=False).encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        size = _cut_torn_tail(fd, path)
        if size == 0:
            data = header + data
        else:
            first = os.pread(fd, 4096, 0).split(b"\n")[0]
            if first.rstrip(b"\r\n") != header.rstrip(b"\r\n"):
                raise RunFolderError(f"{path} has the columns {first.decode('utf-8', 'replace').strip()!r}, not "
                                     f"{','.join(fields)!r}: move it away and rerun to redo its rows")
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def write_rows(path: Path, rows: List[dict], fields: Sequence[str]) -> None:
    """Rewrite a CSV atomically (fsync'd): a killed run leaves the old file or the new one.

    A file that already holds exactly these rows is left as it is.
    """
    text = _csv_text(rows, fields)
    with contextlib.suppress(OSError):
        if path.read_bytes() == text.encode():
            return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_summary(path: Path, rows: List[dict], key: str) -> None:
    """Rewrite a summary CSV whose columns are those of its first row (just `key` when there are none)."""
    write_rows(path, rows, list(rows[0]) if rows else [key])


# ---------------------------------------------------------------------------------- fingerprints
def target_fingerprints(targets: torch.Tensor) -> List[str]:
    """Per target [3, R, R] in [-1, 1]: the first 16 hex digits of the sha256 of its uint8 pixels."""
    return [hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16] for t in to_uint8(targets)]


def file_fingerprint(path: Path) -> str:
    """The first 16 hex digits of the sha256 of a file's bytes (recorded beside the rows computed with it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


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
                  settings_file: str = SETTINGS_FILE) -> None:
    """Record the inversion settings and targets [N, 3, R, R] behind OUT, or check that a resumed run uses the same.

    `compare` and `identity-curves` share the inversions in one OUT and resume them per chunk, so a run
    with other settings or other targets would silently mix results; it is refused instead. A later run
    may use fewer or more targets than an earlier one as long as the targets they share are the same.
    `results`: the files and folders of OUT (names) that belong to the settings; when one of them holds
    anything and the settings file is missing, the run is refused rather than claiming them, as it is
    when the settings file is empty or garbled. `settings_file`: the file's name (the compensation
    comparison keeps its own, `compensation_settings.json`).
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / settings_file
    prints = target_fingerprints(targets)
    if path.exists():
        old = _parse_settings(path)
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            said = ", ".join(f"{k}={a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise RunFolderError(f"{out} holds inversions made with other settings ({said}); resume with the "
                                 f"same settings or choose another output folder")
        known = old["targets"]
        for i, (a, b) in enumerate(zip(known, prints)):
            if a != b:
                raise RunFolderError(f"target {i} is not the image inverted as target {i} in {out} "
                                     f"(pixel sha256 {b} vs {a}); choose another output folder")
        if len(prints) <= len(known):
            return
    else:
        held = [name for name in results if _holds_results(out / name)]
        if held:
            raise RunFolderError(f"{out} holds results ({', '.join(held)}) but no {settings_file}: they cannot be "
                                 f"matched to this run's settings; delete them to start over, or choose another --out")
    write_settings(path, {**settings, "targets": prints})


# ---------------------------------------------------------------------------------- chunk code files
def chunk_path(out: Path, space: str, start: int) -> Path:
    """codes/{space}_{start}.safetensors: the codes of targets start, start + 1, ... in one space."""
    return out / "codes" / f"{space}_{start}.safetensors"


def save_chunk(out: Path, space: str, start: int, code: Code, images: torch.Tensor, steps: int,
               generator: Optional[str] = None) -> str:
    """Write one chunk's codes [n, ...] and their reconstructions [n, 3, R, R] in [-1, 1] (stored uint8),
    with the generator's fingerprint (`latentspaces.fingerprints`) when given; returns the file's
    fingerprint, for its rows."""
    path = chunk_path(out, space, start)
    path.parent.mkdir(parents=True, exist_ok=True)
    code.save(path, space=space, images=to_uint8(images), start=start, steps=steps, generator_fingerprint=generator)
    return file_fingerprint(path)


def _chunk_files(out: Path, space: str) -> List[Tuple[int, Path]]:
    """(start, path) of the chunk files of one space in OUT, by start (other files in codes/ ignored)."""
    pattern = re.compile(rf"{re.escape(space)}_(\d+)\.safetensors")
    found = [(int(m.group(1)), p) for p in (out / "codes").glob(f"{space}_*.safetensors")
             if (m := pattern.fullmatch(p.name))]
    return sorted(found)


def load_codes(out: Path, space: str, n: int, device: str | torch.device = "cpu",
               checksums: Optional[Mapping[int, str]] = None) -> Code:
    """The optimized codes [n, ...] of the first `n` targets in one space, from the chunk files in OUT.

    checksums: chunk start -> the fingerprint recorded with its rows; a chunk file of the first `n`
    targets that is missing or differs raises `RunFolderError` (saying how to redo it) before any is read.
    A file that is not a code file raises `CheckpointError` naming it.
    """
    for start, recorded in sorted((checksums or {}).items()):
        problem = file_problem(chunk_path(out, space, start), recorded) if start < n else None
        if problem:
            raise RunFolderError(f"{problem}; rerun compare or identity-curves into {out} with its settings to "
                                 "redo that chunk")
    parts = _chunk_files(out, space)
    loaded = [read_code_file(p, device) for _, p in parts]
    sizes = [len(f.code) for f in loaded]
    if sum(sizes) < n or [start for start, _ in parts] != [sum(sizes[:i]) for i in range(len(parts))]:
        raise RunFolderError(f"{out / 'codes'} holds no contiguous {space} codes for {n} targets (found "
                             f"{sum(sizes)}); run the inversions first (invert_missing)")
    code = Code.cat([f.code for f in loaded])
    return Code(**{k: code[k][:n] for k in code.fields})


# ---------------------------------------------------------------------------------- image files
def save_image_file(path: Path, images: torch.Tensor, **header: object) -> None:
    """Write images [N, 3, R, R] in [-1, 1] as uint8 (format latentspaces.images), atomically."""
    save_tensors(path, {"images": to_uint8(images)}, IMAGES_FORMAT, 1, **header)


def load_image_file(path: Path) -> torch.Tensor:
    """The uint8 images [N, 3, R, R] of a file written by `save_image_file` (or by earlier runs, headerless)."""
    tensors, _ = load_tensors(path)
    return tensors["images"]


# ---------------------------------------------------------------------------------- summaries
def mean_std_rows(rows: List[dict], key: str, names: Sequence[str], metrics: Sequence[str]) -> List[dict]:
    """Per name (rows with row[key] == name, in `names` order): n, and mean and std of each metric.

    The mean of 'seconds' is reported as 'seconds_per_image' (and its std as 'seconds_per_image_std').
    """
    summary = []
    for name in names:
        mine = [r for r in rows if r[key] == name]
        if not mine:
            continue
        row = {key: name, "n": len(mine)}
        for k in metrics:
            v = torch.tensor([float(r[k]) for r in mine], dtype=torch.float64)
            col = "seconds_per_image" if k == "seconds" else k
            row[col] = float(v.mean())
            row[f"{col}_std"] = float(v.std()) if len(v) > 1 else 0.0
        summary.append(row)
    return summary


def plus_minus(row: dict, key: str, fmt: str) -> str:
    """'mean ± std' of a summary row from `mean_std_rows`, both in `fmt`."""
    return f"{row[key]:{fmt}} ± {row[key + '_std']:{fmt}}"


def write_mean_std_table(out: Path, stem: str, summary: List[dict], key: str,
                         columns: Sequence[Tuple[str, str, str, bool]], note: str = "") -> None:
    """{stem}.csv (every field of the `mean_std_rows` rows) and {stem}.md, both atomically.

    The Markdown table has a column `key`, then n, then one per (title, field, format, spread): 'mean ± std'
    when spread, else the mean alone; `note` (how to read a column) follows the table.
    """
    write_summary(out / f"{stem}.csv", summary, key)
    lines = ["| " + " | ".join([key, "n", *(c[0] for c in columns)]) + " |",
             "| --- | ---: |" + " ---: |" * len(columns)]
    for r in summary:
        cells = [plus_minus(r, field, fmt) if spread else f"{r[field]:{fmt}}" for _, field, fmt, spread in columns]
        lines.append("| " + " | ".join([str(r[key]), str(r["n"]), *cells]) + " |")
    if note:
        lines += ["", note]
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")


__all__ = ["LOCK_FILE", "SETTINGS_FILE", "RowSchema", "RunFolderBusy", "RunFolderError", "RunFolderWarning",
           "append_rows", "chunk_path", "claim_out_dir", "file_fingerprint", "file_problem", "generator_fingerprint",
           "hold_out_dir", "load_codes", "load_image_file", "mean_std_rows", "plus_minus", "read_rows",
           "read_settings", "save_chunk", "save_image_file", "target_fingerprints", "write_mean_std_table",
           "write_rows", "write_settings", "write_summary"]
