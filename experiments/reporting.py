"""How a failure is reported to a user: one line, the same in the terminal and in the browser editor.

`latentspaces <command>` prints `latentspaces <command>: error: <describe_error(e)>`; the editor
(`experiments.app`) shows `describe_error(e)` on the page. The library's own errors and the OS's say all
in their message; any other type is named, with the hint to rerun for the traceback.
"""

from __future__ import annotations

from latentspaces.errors import CheckpointError, MissingWeightsError
from optimizers import InversionDiverged

# Failures whose message says all (the library's own errors and the OS's); others also name their type.
EXPECTED = (CheckpointError, MissingWeightsError, OSError, ValueError, ImportError, InversionDiverged, KeyError)


def one_line(message: object) -> str:
    """A message on one line (some libraries' messages span several)."""
    return " ".join(str(message).split())


def describe_error(e: BaseException, hint: str = "rerun with --debug for the traceback") -> str:
    """The one-line report of `e`; an unexpected type is named, with `hint` (how to see the traceback)."""
    text = one_line(e.args[0] if isinstance(e, KeyError) and e.args else e) or type(e).__name__
    if isinstance(e, EXPECTED):
        return text
    return f"{type(e).__name__}: {text} (unexpected; {hint})"


__all__ = ["EXPECTED", "describe_error", "one_line"]
