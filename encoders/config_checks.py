"""The sizes an encoder's or head's constructor accepts, checked before anything is built.

A network file's header declares its config; `load_encoder` builds the network from it on the meta device
and only then reads the weights. The constructors call these checks so that a config whose sizes cannot
belong to any StyleGAN2 generator (an F resolution of 4096, which asks for a 32,768 px input; a layer named
'x'; zero w rows) is refused with a ValueError there, not at first use.
"""

from __future__ import annotations

import math
import re

MAX_SIDE = 1024  # px: the largest generator of the field (FFHQ config-f) and so the largest image a network reads


def conv_layer_resolution(layer: str, name: str = "layer") -> int:
    """The resolution of a generator conv layer named 'b{res}.conv0' / 'b{res}.conv1' (ValueError otherwise)."""
    match = re.fullmatch(r"b(\d{1,4})\.conv([01])", layer) if isinstance(layer, str) else None
    res = int(match.group(1)) if match else 0
    if not match or res < 4 or res > MAX_SIDE or res & (res - 1) or (res == 4 and match.group(2) == "0"):
        raise ValueError(f"{name} = {str(layer)[:40]!r} is not a conv layer of a StyleGAN2 generator "
                         f"('b<res>.conv0' or 'b<res>.conv1', res a power of two in [4, {MAX_SIDE}]; b4 has conv1 only)")
    return res


def check_side(value: object, name: str, low: int = 4, high: int = MAX_SIDE) -> int:
    """`value` if it is a power of two in [low, high] (a side in px), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high or value & (value - 1):
        raise ValueError(f"{name} = {str(value)[:40]} must be a power of two in [{low}, {high}]")
    return value


def check_count(value: object, name: str, low: int = 1, high: int = 4096) -> int:
    """`value` if it is an integer in [low, high], else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} = {str(value)[:40]} must be an integer in [{low}, {high}]")
    return value


def check_fraction(value: object, name: str, low: float, high: float) -> float:
    """`value` if it is a finite number in (low, high], else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low < value <= high:
        raise ValueError(f"{name} = {str(value)[:40]} must be a number in ({low}, {high}]")
    return float(value)


__all__ = ["MAX_SIDE", "check_count", "check_fraction", "check_side", "conv_layer_resolution"]
