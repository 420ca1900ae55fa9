"""argparse types for the experiments' command lines: each flag is checked once, when it is parsed.

A value that fails raises `argparse.ArgumentTypeError`, which argparse reports as
"argument --steps: ..." and exit status 2. 0 is a value like any other: a flag whose default is
"the preset's value" defaults to None, never to a falsy number. Numbers are finite (no nan, no inf);
files and folders named on the command line exist when it is parsed.

A command line whose flags are each fine but cannot run together (a flag the other flags make
ineffective, an --index past the end of the file) raises `UsageError`; `experiments.cli.main` reports
it like argparse's own errors, one line and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Callable, Tuple, Union

import torch

from encoders.io import encoder_names
from latentspaces import assets
from latentspaces.images import image_files
from latentspaces.spaces import SPACE_ORDER
from optimizers.recipes import MAX_STEPS

SEED_MAX = 2**32 - 1   # numpy's limit, and far below torch's
DEFAULT_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"   # every command's and trainer's --device
# Bounds on what can finish: a value past them is a typo (an extra zero), not an experiment. The papers
# invert with 1,000-5,000 steps and train heads for 100k-500k; GANSpace's PCA uses 10^6 samples.
MAX_TRAIN_STEPS = 10_000_000 # training steps of a trainer
MAX_SAMPLES = 10_000_000     # samples for direction finding (10^7 x 512 float32 = 20 GB)
LR_RANGE = (1e-8, 10.0)      # learning rates outside it either never move a code or blow it up at once
MAX_ALPHA = 100.0            # |alpha| of an edit, in the direction's own units (GANSpace: standard deviations)


class UsageError(Exception):
    """A command line that cannot run as given (flags fine one by one, not together); exit status 2."""


def _number(kind: type, text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_in(low: int, high: Union[int, float] = math.inf, why: str = "") -> Callable[[str], int]:
    """An integer in [low, high]; `why` is said when the value is above `high`."""
    def parse(text: str) -> int:
        value = _number(int, text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low} (give an integer >= {low})")
        if value > high:
            raise argparse.ArgumentTypeError(f"{value} is above {high} (give an integer <= {high}{why})")
        return value
    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer >= low."""
    return int_in(low)


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
seed = int_in(0, SEED_MAX)
step_count = int_in(0, MAX_STEPS, "; more would run for days")
training_steps = int_in(1, MAX_TRAIN_STEPS, "; more would run for months")
sample_count = int_in(1, MAX_SAMPLES, f"; {MAX_SAMPLES:,} samples of 512 floats are 20 GB")


def learning_rate(text: str) -> float:
    """A learning rate in LR_RANGE."""
    value = _number(float, text)
    low, high = LR_RANGE
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value:g} is outside [{low:g}, {high:g}], where learning rates move a "
                                         "code without blowing it up")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate)."""
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not > 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a loss weight)."""
    value = _number(float, text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value:g} is negative (give a number >= 0)")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1] (a share that is kept)."""
    value = _number(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value:g} is not in (0, 1]")
    return value


def finite_float(text: str) -> float:
    """A finite number of either sign (a detector threshold)."""
    return _number(float, text)


def _entries(text: str, example: str) -> Tuple[str, ...]:
    """The comma-separated entries of `text`, stripped; an empty entry ('a,', 'a,,b', '') is refused."""
    parts = tuple(part.strip() for part in text.split(","))
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty entry; give comma-separated values like {example}")
    return parts


def space_name(text: str) -> str:
    """One latent space by name (a key of latentspaces.SPACES)."""
    if text not in SPACE_ORDER:
        raise argparse.ArgumentTypeError(f"unknown space {text!r}; choose from {', '.join(SPACE_ORDER)}")
    return text


def space_list(text: str) -> Tuple[str, ...]:
    """Comma-separated space names, each known, none twice: 'W,FZPlus' -> ('W', 'FZPlus')."""
    names = tuple(space_name(part) for part in _entries(text, "W,FZPlus"))
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a space twice")
    return names


def name_list(choices: Tuple[str, ...], what: str) -> Callable[[str], Tuple[str, ...]]:
    """argparse type: comma-separated names from `choices`, none twice ('base,hfgi,pti' for methods)."""
    def parse(text: str) -> Tuple[str, ...]:
        names = tuple(_entries(text, ",".join(choices[:2])))
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
        if len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"{text!r} names a {what} twice")
        return names
    return parse


def float_list(text: str) -> Tuple[float, ...]:
    """Comma-separated finite numbers: '-2,0,2' -> (-2.0, 0.0, 2.0) (write --alphas=-2,0,2 for a leading minus)."""
    return tuple(_number(float, part) for part in _entries(text, "-2,0,2"))


def alpha_list(text: str) -> Tuple[float, ...]:
    """Edit strengths: a `float_list` with every |alpha| <= MAX_ALPHA."""
    values = float_list(text)
    big = [a for a in values if abs(a) > MAX_ALPHA]
    if big:
        raise argparse.ArgumentTypeError(f"|alpha| = {abs(big[0]):g} is above {MAX_ALPHA:g} (in the direction's units: "
                                         "GANSpace's are standard deviations, and a few already change the face)")
    return values


def layer_list(text: str) -> Tuple[str, ...]:
    """Comma-separated conv layer names of a synthesis network ('b8.conv0,b16.conv0'), none twice; the
    generator, once loaded, says which exist."""
    names = tuple(_entries(text, "b8.conv0,b16.conv0"))
    bad = [n for n in names if not re.fullmatch(r"b\d+\.conv[01]", n)]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(bad)}: a conv layer is named b<resolution>.conv0 or .conv1 "
                                         "(b4 has conv1 only), e.g. b16.conv0")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a layer twice")
    return names


def edit_sizes(text: str) -> Tuple[float, ...]:
    """Comma-separated edit sizes, mean absolute pixel changes in (0, 2): '0.02,0.04' -> (0.02, 0.04); 'none' -> ()."""
    if text.strip().lower() == "none":
        return ()
    sizes = tuple(_number(float, part) for part in _entries(text, "0.02,0.04,0.06"))
    bad = [s for s in sizes if not 0 < s < 2]
    if bad:
        raise argparse.ArgumentTypeError(f"edit sizes are mean absolute pixel changes of images in [-1, 1], in (0, 2); "
                                         f"got {', '.join(f'{s:g}' for s in bad)}")
    return tuple(sorted(set(sizes)))


def existing_file(text: str) -> Path:
    """The path of a file that exists."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no file at {text}")
    return path


def _as_text(check: Callable[[str], Path], what: str) -> Callable[[str], str]:
    """argparse type: `check`'s test, the value kept as the text given (a trainer stores its flags as JSON)."""
    def parse(text: str) -> str:
        check(text)
        return text
    parse.__doc__ = f"{what}, kept as the text given (a trainer stores its flags as JSON)."
    return parse


def data_source(text: str) -> str:
    """A trainer's --data: 'default', 'generator' or a folder that exists (`folder_text`)."""
    if text in ("default", "generator"):
        return text
    try:
        return folder_text(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (give 'default', 'generator' or a folder of images)") from None


def existing_dir(text: str) -> Path:
    """The path of a folder that exists (one a command reads)."""
    path = Path(text)
    if not text.strip() or not path.is_dir():
        raise argparse.ArgumentTypeError(f"no folder at {text!r}")
    return path


file_text = _as_text(existing_file, "A file that exists")
folder_text = _as_text(existing_dir, "A folder that exists")


def out_dir(text: str) -> Path:
    """A folder to write to: it may not exist yet, but no file may stand in its place."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    if path.is_symlink() and not path.exists():
        raise argparse.ArgumentTypeError(f"{text} is a link to {os.readlink(path)}, which does not exist; create "
                                         "that folder or choose another --out")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    for parent in path.absolute().parents:  # an ancestor that is a file or a broken link fails mkdir later
        if parent.is_symlink() and not parent.exists():
            raise argparse.ArgumentTypeError(f"{parent} is a link to {os.readlink(parent)}, which does not exist")
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{parent} is a file, so {text} cannot be a folder")
    return path


def _name_or_file(text: str, names, what: str) -> str:
    if text in names:
        return text
    path = Path(text)
    if path.is_file():
        return text
    said = "is a folder" if path.is_dir() else "is not a file"
    raise argparse.ArgumentTypeError(f"{text!r} {said} and not a shipped {what} name ({', '.join(sorted(names))})")


def generator_spec(text: str) -> str:
    """A shipped generator name ('default') or the path of a checkpoint file."""
    return _name_or_file(text, assets.names("generator"), "generator")


def encoder_spec(text: str) -> str:
    """A shipped encoder or head name ('default-f', ...) or the path of an encoder file."""
    return _name_or_file(text, encoder_names(), "encoder")


def device_name(text: str) -> str:
    """A torch device this machine has: 'cpu', 'cuda', 'cuda:1', 'mps'."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text}: this machine has no usable CUDA device (use --device cpu)")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA device(s), cuda:0 .. "
                                             f"cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine (use --device cpu)")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda, cuda:N or mps")
    return text


HELDOUT = "heldout"


def target_spec(text: str) -> Union[str, Tuple[Path, ...]]:
    """'heldout' (the shipped held-out faces), or comma-separated image files and folders -> the image files,
    folders expanded (sorted); a missing path, an empty entry or a folder without images is refused."""
    if text == HELDOUT:
        return HELDOUT
    try:
        return tuple(image_files(_entries(text, "a.png,faces/")))
    except (FileNotFoundError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def photo_files(text: str) -> Tuple[Path, ...]:
    """One photo file, or a folder -> its image files (sorted); a missing path or a folder without images is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    try:
        return tuple(image_files([text]))
    except (FileNotFoundError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


__all__ = ["DEFAULT_DEVICE", "HELDOUT", "file_text", "fraction", "SEED_MAX", "UsageError", "device_name", "encoder_spec", "existing_dir", "existing_file",
           "finite_float", "float_list", "generator_spec", "int_at_least", "int_in", "non_negative_float",
           "non_negative_int", "out_dir", "photo_files", "positive_float", "positive_int", "seed", "space_list",
           "space_name", "target_spec"]
