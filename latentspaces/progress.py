"""Progress bars for a terminal, a few plain lines for a log file.

`progress_bar(...)` takes tqdm's arguments. On a terminal it is tqdm's bar. When stderr is not a terminal
(output sent to a file, a job scheduler's log, a notebook's captured stream) a bar would rewrite itself
with carriage returns hundreds of times (186 KB for one `compare`), so it becomes `LogLines`: one line
when it starts, one every `LINE_INTERVAL` seconds, one when it ends. `LATENTSPACES_PROGRESS=bars` or
`=lines` forces either; `status(text)` prints a one-line note of a step that has no count (a PCA, a
solve) so that nothing runs for long without a word.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tqdm import tqdm

LINE_INTERVAL = 30.0   # seconds between the lines of a bar written to a file


class _NoCarriageReturns:
    """A stream wrapper that drops the carriage returns tqdm writes to move back over its bar."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "")
        if text:
            self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


class LogLines(tqdm):
    """tqdm that writes whole lines, at most one per `LINE_INTERVAL` seconds, plus its first and its last."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._last_line, self._last_n, self._finished_line = -float("inf"), -1, False
        kwargs.setdefault("mininterval", 1.0)
        kwargs["file"] = _NoCarriageReturns(kwargs.get("file") or sys.stderr)
        kwargs["bar_format"] = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]" \
            if kwargs.get("total", None) is not None or (args and hasattr(args[0], "__len__")) \
            else "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"
        super().__init__(*args, **kwargs)

    def display(self, msg: Any = None, pos: Any = None) -> bool:
        if self.disable or (msg is not None and not str(msg).strip()):
            return True
        now = time.time()
        finished = self.total is not None and self.n >= self.total
        due = now - self._last_line >= LINE_INTERVAL and self.n != self._last_n
        if self._finished_line or not (self._last_n < 0 or due or finished):
            return True
        self._last_line, self._last_n, self._finished_line = now, self.n, finished
        self.fp.write(" ".join(str(msg if msg is not None else self.__str__()).split()) + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable and not self._finished_line and self.n != self._last_n:
            self._last_line = -float("inf")
            self.display()   # where it stopped, when that was not the last line written
        self.leave = False   # tqdm's own close would write the bar again
        super().close()

    def clear(self, *args: Any, **kwargs: Any) -> None:   # nothing to erase in a file
        pass


def _lines() -> bool:
    forced = os.environ.get("LATENTSPACES_PROGRESS", "").strip().lower()
    if forced in ("bars", "lines"):
        return forced == "lines"
    if "ipykernel" in sys.modules:   # a notebook: tqdm.auto draws a widget
        return False
    stream = sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """tqdm(*args, **kwargs) on a terminal or in a notebook (tqdm.auto); `LogLines` when stderr is neither."""
    if _lines():
        return LogLines(*args, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm
    return auto_tqdm(*args, **kwargs)


def status(text: str) -> None:
    """One line on stdout saying what runs now (a step without a count), flushed at once (stderr stays for
    the bars and for errors, which are one line)."""
    print(text, flush=True)


__all__ = ["LINE_INTERVAL", "LogLines", "progress_bar", "status"]
