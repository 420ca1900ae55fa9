"""CSV row files of a run folder and of a training log: whole lines only, locked, fsync'd, read back forgivingly.

- `append_rows` appends under a lock on the CSV itself (so the ranks of one run append exactly one
  header), as one write of whole lines, flushed and fsync'd; it first cuts a torn tail (a last line
  without its newline: a killed write, a full disk) and refuses a file whose header is not `fields`.
  `write_rows` rewrites a CSV atomically (temp file, fsync, rename); `write_summary` a summary's.
- Reading is forgiving, never silent: `read_rows` drops a torn last line and rows with the wrong number
  of fields; with a `RowSchema` it also drops rows whose numbers do not parse or whose metrics are not
  finite, keeps one row of a key written twice with the same values, and drops every row of a key
  written twice with different values (neither can be trusted to be the right one: an appended row
  with mse = 0 must not win), each with a `RunFolderWarning` that says how many and why. The studies
  then redo what was dropped and rewrite the CSV, so a folder holds each key once.

Every CSV is written and read with the csv module (a comma inside a value is quoted, never a new column).
`RunFolderError` (a ValueError) is a file of a run folder that cannot be used as it is.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from latentspaces.storage import atomic_path

try:  # file locks; absent on Windows, where runs go unlocked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


class RunFolderError(ValueError):
    """A run folder that cannot be used as it is; the message names the file and what to do."""


class RunFolderWarning(UserWarning):
    """Rows dropped from a run folder's CSV (torn, malformed or repeated); the run redoes their work."""


@dataclass(frozen=True)
class RowSchema:
    """The columns of one CSV of a run folder, and what makes a row of it whole."""

    fields: Tuple[str, ...]          # the columns, in the order written
    key: Tuple[str, ...]             # the columns that identify a row: a later row with the same key replaces it
    ints: Tuple[str, ...] = ()       # columns that must parse as int (normalised to str(int(value)))
    floats: Tuple[str, ...] = ()     # columns that must parse as float ('nan' does)
    finite: Tuple[str, ...] = ()     # columns that must hold a finite number (a metric every row computes)

    @property
    def required(self) -> Tuple[str, ...]:
        """The columns a file must have (others missing from an older file read as '')."""
        return tuple(dict.fromkeys(self.key + self.ints + self.floats + self.finite))


def _warn_dropped(path: Path, what: str, examples: List[str]) -> None:
    more = f", and {len(examples) - 1} more" if len(examples) > 1 else ""
    warnings.warn(f"{path}: dropped {len(examples)} {what} ({examples[0]}{more}); their work is redone",
                  RunFolderWarning, stacklevel=3)


def read_rows(path: Path, schema: Optional[RowSchema] = None) -> List[dict]:
    """The whole rows of a CSV as dicts of strings ([] when the file does not exist).

    A torn last line (no newline) and rows with the wrong number of fields are dropped. With `schema`,
    rows whose numbers do not parse or whose `finite` columns are NaN or infinite are dropped too,
    missing optional columns read as '', rows that repeat an earlier row of their key exactly are
    dropped, and every row of a key written twice with different values is dropped. Each drop warns
    (`RunFolderWarning`).
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
    repeated, conflicting = 0, {}
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
                for k in schema.finite:
                    if not math.isfinite(float(row[k])):
                        raise ValueError(f"{k} = {row[k]}, not a finite number")
            except ValueError as e:
                bad.append(f"line {line}: {e}")
                continue
            for k in schema.fields:
                row.setdefault(k, "")
            key = tuple(row[k] for k in schema.key)
        earlier = rows.get(key)
        if earlier is None:
            rows[key] = row
        elif earlier == row:
            repeated += 1
        else:
            conflicting.setdefault(key, line)
    for key in conflicting:
        del rows[key]
    if bad:
        _warn_dropped(path, "malformed row(s)", bad)
    if repeated:
        warnings.warn(f"{path}: {repeated} row(s) repeated the key and values of an earlier one; one of each is kept",
                      RunFolderWarning, stacklevel=2)
    if conflicting:
        _warn_dropped(path, "key(s) written twice with different values (every row of each)",
                      [f"{', '.join(map(str, key))} again at line {line}" for key, line in conflicting.items()])
    return list(rows.values())


def read_columns(path: Path) -> List[str]:
    """The header of a CSV file ([] when it is empty)."""
    with path.open(newline="") as f:
        return next(csv.reader(f), [])


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
    """Rewrite a summary CSV whose columns are every row's keys, in the order first seen (just `key` when there
    are no rows); a row without a column leaves its cell empty (a paired test's reference has no test
    against itself)."""
    columns = list(dict.fromkeys(k for r in rows for k in r)) if rows else [key]
    write_rows(path, rows, columns)


__all__ = ["RowSchema", "RunFolderError", "RunFolderWarning", "append_rows", "read_columns", "read_rows", "write_rows",
           "write_summary"]
