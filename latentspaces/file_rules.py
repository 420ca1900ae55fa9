"""The rules for reading files that may be broken or hostile, and the message helpers they use.

- `check_tensor(key, value, expected_shape, path)`: a tensor read from a file is accepted only when it is
  dense, floating (or of the dtype its buffer has), of the expected shape, backed by its own stored
  data (no stride-0 or overlapping view), finite, and at most `MAX_ABS_WEIGHT` in magnitude.
- `config_is_plausible(config, path, what)`: the JSON config a network is built from before its weights
  are read holds only plain values of bounded size (no constructor asked to allocate or loop forever).
- `show` / `shape_text`: short printable forms of values and shapes read from such files, for messages.

Every refusal is a `CheckpointError` naming the file and what is wrong. `latentspaces.storage.load_module`
applies these rules to a network's file before allocating it.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .errors import CheckpointError


# ---------------------------------------------------------------------------------- checked tensors
# Stored network weights (StyleGAN2) are O(1) to O(1e3) (the mapping stores randn / lr_multiplier); four factors
# of 1e8 still fit in float32, one of 1e38 does not.
MAX_ABS_WEIGHT = 1e8
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def show(value: object, limit: int = 60) -> str:
    """A short printable form of any value (huge ints as powers of two, long reprs cut)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"about 2^{abs(value).bit_length() - 1}" if value > 0 else f"about -2^{abs(value).bit_length() - 1}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shape_text(shape) -> str:
    """[a, b, ...] with huge sizes shortened (for messages)."""
    return "[" + ", ".join(show(int(s)) for s in shape) + "]"


def backed_by_storage(t: torch.Tensor) -> bool:
    """True when every element of `t` is a distinct element of its storage (no stride-0 or overlapping views)."""
    if t.numel() * t.element_size() > t.untyped_storage().nbytes():
        return False
    dims = sorted((stride, size) for stride, size in zip(t.stride(), t.shape) if size > 1)
    span = 1
    for stride, size in dims:  # non-overlapping iff each stride is at least the extent of the smaller ones
        if stride < span:
            return False
        span = stride * size
    return True


def check_tensor(key: str, value: object, expected_shape: Optional[tuple], path: str,
                 max_abs: float = MAX_ABS_WEIGHT, dtypes: Sequence[torch.dtype] = FLOAT_DTYPES) -> torch.Tensor:
    """`value` if it is a dense floating tensor of `expected_shape` (when given) backed by its own stored
    data (no stride-0 or overlapping view), finite, and no larger than `max_abs` in magnitude;
    CheckpointError naming the key otherwise. Nothing is cast or expanded. `dtypes`: the accepted
    dtypes (an integer buffer such as BatchNorm's step counter passes its own dtype)."""
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: {key} is a {type(value).__name__}, expected a tensor")
    if value.is_meta or value.layout != torch.strided:
        raise CheckpointError(f"{path}: {key} is a {value.layout} / meta tensor; expected a dense tensor with data")
    if value.numel() and not backed_by_storage(value):
        raise CheckpointError(f"{path}: {key} is a view of shape {shape_text(value.shape)} over {value.untyped_storage().nbytes()} "
                              "stored bytes (stride 0 or overlapping); a checkpoint stores every weight. "
                              "Refusing to expand it")
    if expected_shape is not None and tuple(value.shape) != tuple(expected_shape):
        raise CheckpointError(f"{path}: {key} has shape {shape_text(value.shape)}, but the declared architecture "
                              f"implies {shape_text(expected_shape)}")
    if value.dtype not in dtypes:
        raise CheckpointError(f"{path}: {key} has dtype {value.dtype}; expected "
                              f"{', '.join(str(d).replace('torch.', '') for d in dtypes)}. Refusing to cast.")
    if not value.is_floating_point():
        return value
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise CheckpointError(f"{path}: {key} holds {bad} non-finite value(s) (NaN or Inf) of {value.numel()}; "
                              "the checkpoint is damaged")
    if value.numel() and float(value.abs().max()) > max_abs:
        raise CheckpointError(f"{path}: {key} holds a value of magnitude {float(value.abs().max()):.3g}, over "
                              f"{max_abs:.0e}: products of such weights overflow float32; the checkpoint is "
                              "damaged")
    return value


def config_is_plausible(config: object, path: str, what: str, depth: int = 0) -> None:
    """CheckpointError unless a JSON config holds only plain values of plausible size.

    The rule for networks built from a header before their weights are read: integers in [-1, 2**16]
    (channels, layer counts, resolutions), finite floats, nesting at most 6 deep, at most 1,000 entries
    per container. It bounds what a constructor can be asked to allocate or loop over.
    """
    if depth > 6:
        raise CheckpointError(f"{path}: the {what} config is nested more than 6 levels deep")
    if isinstance(config, bool) or config is None or isinstance(config, str):
        return
    if isinstance(config, int):
        if not -1 <= config <= 2**16:
            raise CheckpointError(f"{path}: the {what} config holds the integer {show(config)}; sizes and counts "
                                  "of these networks lie in [-1, 65536]")
        return
    if isinstance(config, float):
        if not math.isfinite(config):
            raise CheckpointError(f"{path}: the {what} config holds {config}; expected finite numbers")
        return
    if isinstance(config, (list, dict)):
        if len(config) > 1000:
            raise CheckpointError(f"{path}: the {what} config has a container of {len(config)} entries")
        for item in (config.values() if isinstance(config, dict) else config):
            config_is_plausible(item, path, what, depth + 1)
        return
    raise CheckpointError(f"{path}: the {what} config holds a {type(config).__name__}")


__all__ = ["FLOAT_DTYPES", "MAX_ABS_WEIGHT", "backed_by_storage", "check_tensor", "config_is_plausible", "shape_text", "show"]
