"""One rule for every checkpoint format: check the declaration against the tensors, then build.

Every loader (native, rosinality, NVlabs) turns its file into two things, a declared `config` and a
`tensors` dict under this project's state-dict names, and hands both to `build_generator`, which
refuses with `CheckpointError` before allocating anything when

- a config field is implausible (`generator.config.check_config`: sizes, counts, a zero or NaN
  learning-rate multiplier, a clamp of 0 or less, zero/odd/NaN resampling taps);
- the weights the config implies would need more than `max_bytes` (default `MAX_GENERATOR_BYTES`);
- a key is missing or unexpected, or a tensor's shape differs from the one the config implies (so a
  tiny file cannot make the build allocate: every tensor is the size the bounded config says);
- a tensor is a view larger than its stored data (stride 0 or overlapping: a 200 KB file can otherwise
  declare a 16 GiB tensor);
- a tensor is not floating point (int, uint8, bool, complex weights are refused, not cast) or holds
  NaN/Inf, or a magnitude over `MAX_ABS_WEIGHT`.

Only then is the Generator built and the weights cast to float32. `finish` ends every loader: w_avg must
be finite, and the images rendered from a fixed z and from w_avg must be finite (large finite weights
can overflow together); the
message names the first layer whose output is not. The render costs one forward pass (about 5 s for a
1024 px config-f generator on a 2-core CPU, milliseconds on a GPU); `load_generator(..., verify_output=False)`
skips it; `load_generator` renders on the device the generator is loaded to.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch

from ..errors import CheckpointError
from ..file_rules import check_tensor, shape_text, show
from ..generator import FullyConnectedLayer, Generator, SynthesisLayer, ToRGBLayer
from ..generator.config import ConfigError, check_config, state_bytes, state_shapes

MAX_GENERATOR_BYTES = 2 * 2**30  # 16x the float32 weights of the largest published StyleGAN2 (config-f, 1024 px)
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
    need = state_bytes(cfg)
    if need > max_bytes:
        raise CheckpointError(f"{path}: the declared architecture needs {need / 2**30:.1f} GiB of float32 weights, "
                              f"over the limit of {max_bytes / 2**30:.1f} GiB (config-f at 1024 px needs 0.12 GiB); "
                              "pass max_bytes=... to load_generator if the file is genuine")
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


def verify_output(G: Generator, path: str) -> None:
    """Render a fixed z and w_avg (on G's device); CheckpointError naming the first layer whose output is not finite."""
    device = G.mapping.w_avg.device
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():  # one random z and the average w (the truncation centre)
        ws = torch.stack([G.mapping(z)[0], G.mapping.w_avg]).unsqueeze(1).repeat(1, G.num_ws, 1)
        image = G.synthesis(ws, noise_mode="const")
    if not bool(torch.isfinite(image).all()):
        raise CheckpointError(f"{path}: every weight is finite, but the generator's image is not (first non-finite "
                              f"output: {_first_non_finite(G, z, ws)}); the weights overflow float32")


def finish(G: Generator, path: str, verify: bool = True) -> Generator:
    """Eval mode, gradients off, w_avg finite, and (verify) one finite image from a fixed z."""
    G = G.eval().requires_grad_(False)
    check_w_avg(G, path)
    if verify:
        verify_output(G, path)
    return G


__all__ = ["MAX_GENERATOR_BYTES", "build_generator", "check_layout", "check_w_avg", "checked_config", "finish",
           "verify_output"]
