"""One rule for every checkpoint format: check the declaration against the tensors, then build.

Every loader (native, rosinality, NVlabs) turns its file into two things, a declared `config` and a
`tensors` dict under this project's state-dict names, and hands both to `build_generator`, which
refuses with `CheckpointError` before allocating anything when

- a config field is implausible (`generator.config.check_config`: sizes, counts, a zero or NaN
  learning-rate multiplier, a clamp of 0 or less, zero/odd/NaN resampling taps);
- the weights and buffers the config implies, plus rendering one image for the output check
  (`probe_bytes`), would need more than `max_bytes` (default `MAX_GENERATOR_BYTES`): a 14 KB file
  without noise maps can declare 8192 px with one channel per layer, 0.7 GB of noise buffers and about
  10 GB to render;
- a key is missing or unexpected, or a tensor's shape differs from the one the config implies (so a
  tiny file cannot make the build allocate: every tensor is the size the bounded config says);
- a tensor is a view larger than its stored data (stride 0 or overlapping: a 200 KB file can otherwise
  declare a 16 GiB tensor);
- a tensor is not floating point (int, uint8, bool, complex weights are refused, not cast) or holds
  NaN/Inf, or a magnitude over `MAX_ABS_WEIGHT`;
- (after building) the images rendered from a fixed z and from w_avg are not finite or exceed
  `MAX_ABS_IMAGE` (finite weights with a gain of 100 in the mapping render 1e31).

Only then is the Generator built and the weights cast to float32. `finish` ends every loader: w_avg must
be finite, and the images rendered from a fixed z and from w_avg must be finite (large finite weights
can overflow together); the
message names the first layer whose output is not. The render costs one forward pass (about 5 s for a
1024 px config-f generator on a 2-core CPU, milliseconds on a GPU); `load_generator(..., verify_output=False)`
skips it; `load_generator` renders on the device the generator is loaded to.
"""

from __future__ import annotations

import re
from typing import Callable, List, Mapping, Optional

import torch

from ..errors import CheckpointError
from ..file_rules import check_tensor, shape_text, show
from ..generator import FullyConnectedLayer, Generator, SynthesisLayer, ToRGBLayer
from ..generator.config import ConfigError, check_config, state_bytes, state_shapes
from ..generator.ops import setup_filter

MAX_GENERATOR_BYTES = 2 * 2**30  # 2.3x config-f at 1024 px (0.12 GiB of weights and buffers + 0.75 GiB to render one image)
# The output check's bounds. A trained StyleGAN2 renders about [-1.2, 1.2] (the default model: 1.17 over 64 z); random
# initialisations of 8-1024 px, 1-512 channels stayed under 10 (config-f: 7.0). 100x that margin is implausible.
MAX_ABS_IMAGE = 1e3
LAYER_TYPES = (FullyConnectedLayer, SynthesisLayer, ToRGBLayer)  # named in overflow messages


def checked_config(config: Mapping[str, object], path: str, sources: Optional[Mapping[str, str]] = None) -> dict:
    """`check_config`, with failures raised as CheckpointError naming the file."""
    try:
        return check_config(config, sources)
    except ConfigError as e:
        raise CheckpointError(f"{path}: implausible generator architecture: {e}") from None


def check_layout(config: Mapping[str, object], shapes: Mapping[str, Optional[tuple]], path: str, *,
                 optional: Callable[[str], bool] = lambda key: False,
                 sources: Optional[Mapping[str, str]] = None,
                 max_bytes: int = MAX_GENERATOR_BYTES) -> dict:
    """Check a declared config against the shapes present ({key: shape}), before anything is read or built.

    Returns the normalised config. Refuses an implausible config, a build over `max_bytes`, missing or
    unexpected keys, and shapes that differ from the ones the config implies.
    """
    cfg = checked_config(config, path, sources)
    weights, render = state_bytes(cfg), probe_bytes(cfg)
    if weights + render > max_bytes:
        raise CheckpointError(f"{path}: the declared architecture needs {weights / 2**30:.1f} GiB of weights and "
                              f"{render / 2**30:.1f} GiB to render one image, over max_bytes = {max_bytes / 2**30:.1f} GiB "
                              "(config-f 1024 px: 0.12 + 0.75); pass max_bytes=... if the file is genuine")
    expected = state_shapes(cfg)
    unexpected = sorted(k for k in shapes if k not in expected)
    missing = sorted(k for k in expected if k not in shapes and not optional(k))
    if unexpected or missing:
        raise CheckpointError(f"{path}: the tensors do not match the declared architecture (unexpected "
                              f"{[show(k) for k in unexpected[:6]]}, missing {missing[:6]})")
    for key, shape in shapes.items():
        if shape is not None and tuple(shape) != expected[key]:
            raise CheckpointError(f"{path}: {key} has shape {shape_text(shape)}, but the declared architecture "
                                  f"implies {shape_text(expected[key])}")
    return cfg


def key_indices(sd: Mapping[object, object], pattern: str, path: str) -> List[int]:
    """The integers that `pattern`'s one group matches in the keys of a foreign state dict (each key must be a
    string: CheckpointError naming the file otherwise); keep the group bounded (\\d{1,9}) so a key cannot ask for
    a huge count."""
    bad = [k for k in sd if not isinstance(k, str)]
    if bad:
        raise CheckpointError(f"{path}: the state dict has non-string keys {[show(k) for k in bad[:4]]}")
    return [int(m.group(1)) for k in sd if (m := re.fullmatch(pattern, k))]


def check_resample_filter(value: object, key: str, path: str, shape: tuple) -> None:
    """CheckpointError unless `value` (of `shape`) is StyleGAN2's [1, 3, 3, 1] resampling filter x 4: a stored
    filter is not a weight, and a custom one is not supported."""
    expected = (setup_filter([1, 3, 3, 1]) * 4).reshape(shape)
    kernel = check_tensor(key, value, shape, path)
    if not torch.allclose(kernel.float(), expected, atol=1e-6):
        raise CheckpointError(f"{path}: {key} is not the standard [1,3,3,1] filter x 4; custom blur kernels are not "
                              "supported")


def build_generator(config: Mapping[str, object], tensors: Mapping[str, object], path: str, *,
                    optional: Callable[[str], bool] = lambda key: False,
                    sources: Optional[Mapping[str, str]] = None,
                    max_bytes: int = MAX_GENERATOR_BYTES) -> Generator:
    """Check `config` and `tensors` (this project's key names) against each other, then build the Generator.

    optional(key) -> True for keys the caller fills in afterwards when absent (rosinality files without
    noise maps or latent_avg). Raises CheckpointError; allocates nothing before every check has passed.
    """
    shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in tensors.items()}
    cfg = check_layout(config, shapes, path, optional=optional, sources=sources, max_bytes=max_bytes)
    state = {k: check_tensor(k, v, None, path) for k, v in tensors.items()}
    G = Generator(**cfg)
    G.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
    return G


def _first_non_finite(G: Generator, z: torch.Tensor, ws: torch.Tensor) -> str:
    """Name of the first layer (in execution order) whose output is not finite, for the error message."""
    order: list = []
    hooks = []
    for name, module in G.named_modules():
        if isinstance(module, LAYER_TYPES):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: order.append(name) if not bool(torch.isfinite(o).all()) else None))
    try:
        with torch.no_grad():
            G.mapping(z)
            G.synthesis(ws, noise_mode="const")
    finally:
        for h in hooks:
            h.remove()
    return order[0] if order else "the output"


def check_w_avg(G: Generator, path: str) -> None:
    """CheckpointError when w_avg (stored, or estimated from the mapping network) is not finite."""
    if not bool(torch.isfinite(G.mapping.w_avg).all()):
        raise CheckpointError(f"{path}: w_avg (latent_avg) is not finite; the mapping network's output overflows")


def probe_bytes(config: Mapping[str, object]) -> int:
    """Estimated peak bytes of rendering one image of `config` at batch 1 (the output check's probe):
    4 * R^2 * max(48, 6 C_R), C_R the channels of the last block.

    An upper bound of peak RSS measured on the CPU (torch 2.14): config-f at 1024 px 695 MB (estimate 805);
    one channel per layer at 1024 / 2048 / 4096 px 207 / 724 / 2657 MB (estimates 201 / 805 / 3221); four
    channels at 2048 px 411 MB (805). Thin networks cost about 40 floats per output pixel whatever C.
    """
    res = int(config["resolution"])
    channels = int({int(k): v for k, v in config["channels"].items()}[res])
    return 4 * res * res * max(48, 6 * channels)


def verify_output(G: Generator, path: str) -> None:
    """Render a fixed z and w_avg (on G's device, one at a time); CheckpointError unless both images are
    finite and within `MAX_ABS_IMAGE`, naming the first layer whose output is not finite.

    Its memory (`probe_bytes`) was counted in `check_layout`'s budget before the generator was built.
    """
    device = G.mapping.w_avg.device
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0)).to(device)
    largest = 0.0
    with torch.no_grad():  # one random z and the average w (the truncation centre)
        ws = torch.stack([G.mapping(z)[0], G.mapping.w_avg]).unsqueeze(1).repeat(1, G.num_ws, 1)
        for i in range(2):
            image = G.synthesis(ws[i : i + 1], noise_mode="const")
            if not bool(torch.isfinite(image).all()):
                raise CheckpointError(f"{path}: every weight is finite, but the generator's image is not (first "
                                      f"non-finite output: {_first_non_finite(G, z, ws)}); the weights overflow float32")
            largest = max(largest, float(image.abs().max()))
    if largest > MAX_ABS_IMAGE:
        raise CheckpointError(f"{path}: every weight is finite, but the generator renders values of magnitude "
                              f"{largest:.3g}, over {MAX_ABS_IMAGE:.0e} (images lie in about [-1, 1]); the weights or "
                              "the declared gains (e.g. mapping_lr_multiplier) are wrong")


def finish(G: Generator, path: str, verify: bool = True) -> Generator:
    """Eval mode, gradients off, w_avg finite, and (verify) one finite image from a fixed z."""
    G = G.eval().requires_grad_(False)
    check_w_avg(G, path)
    if verify:
        verify_output(G, path)
    return G


__all__ = ["MAX_ABS_IMAGE", "MAX_GENERATOR_BYTES", "probe_bytes", "build_generator", "check_resample_filter",
           "key_indices", "check_layout", "check_w_avg", "checked_config", "finish",
           "verify_output"]
