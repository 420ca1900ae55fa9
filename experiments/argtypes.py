"""argparse types for the experiments' command lines: each flag is checked once, when it is parsed.

A value that fails raises `argparse.ArgumentTypeError`, which argparse reports as
"argument --steps: ..." and exit status 2. 0 is a value like any other: a flag whose default is
"the preset's value" defaults to None, never to a falsy number.
"""

from __future__ import annotations

import argparse
from typing import Callable, Tuple

from latentspaces.spaces import SPACE_ORDER


def _number(kind: type, text: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer >= low."""
    def parse(text: str) -> int:
        value = _number(int, text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low} (give an integer >= {low})")
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    """A number > 0 (a learning rate, a sample count given as 1e5)."""
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not > 0")
    return value


def non_negative_float(text: str) -> float:
    """A number >= 0 (a loss weight)."""
    value = _number(float, text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value:g} is negative (give a number >= 0)")
    return value


def space_name(text: str) -> str:
    """One latent space by name (a key of latentspaces.SPACES)."""
    if text not in SPACE_ORDER:
        raise argparse.ArgumentTypeError(f"unknown space {text!r}; choose from {', '.join(SPACE_ORDER)}")
    return text


def space_list(text: str) -> Tuple[str, ...]:
    """Comma-separated space names, each known, none twice: 'W,FZPlus' -> ('W', 'FZPlus')."""
    names = tuple(space_name(part.strip()) for part in text.split(","))
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a space twice")
    return names


def float_list(text: str) -> Tuple[float, ...]:
    """Comma-separated numbers: '-2,0,2' -> (-2.0, 0.0, 2.0) (write --alphas=-2,0,2 for a leading minus)."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty entry; give comma-separated numbers like -2,0,2")
    return tuple(_number(float, part) for part in parts)


__all__ = ["float_list", "int_at_least", "non_negative_float", "non_negative_int", "positive_float",
           "positive_int", "space_list", "space_name"]
