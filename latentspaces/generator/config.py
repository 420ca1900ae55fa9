"""The generator's configuration: plausible ranges, the state-dict layout it implies, the memory it needs.

A checkpoint declares an architecture (a config in a header, constructor arguments in a pickle, key
counts in a state dict). Everything here is arithmetic on that declaration, so a loader can refuse an
implausible or inconsistent file *before* a single weight is allocated:

- `check_config(config)` -> the normalised `Generator(**config)` keyword arguments, or `ConfigError`
  naming the field, its value and the accepted range. `Generator.__init__` calls it too.
- `state_shapes(config)` -> {state-dict key: shape} of `Generator(**config)` (persistent tensors only),
  computed without building it; `tests/test_generator_config.py` holds it equal to the real module.
- `state_bytes(config)` -> bytes of those tensors in float32.

The ranges are wide (the largest published StyleGAN2, config-f at 1024 px, uses z_dim = w_dim = 512,
8 mapping layers and at most 512 channels) and exist to stop nonsense, not to police research.
"""

from __future__ import annotations

import math
import numbers
from typing import Dict, Mapping, Optional, Tuple

from ..file_rules import show

DIM_RANGE = (1, 16384)          # z_dim, w_dim
RESOLUTION_RANGE = (4, 8192)    # output resolution, a power of two
IMG_CHANNELS_RANGE = (1, 4)     # grayscale, RGB, RGBA
MAPPING_LAYERS_RANGE = (1, 32)  # StyleGAN2: 8; stylegan2-ada's CIFAR config: 2
LR_MULTIPLIER_RANGE = (0.0, 100.0)  # exclusive at 0: a zero multiplier maps every z to one w
CHANNELS_RANGE = (1, 16384)     # feature channels per block
CONV_CLAMP_MAX = 1e5            # NVlabs' training configs use 256; beyond float32-safe products it means nothing
TAPS_COUNT_RANGE = (2, 16)      # resampling filter length (even: the padding of up/down-sampling assumes it)

FIELDS = ("z_dim", "w_dim", "resolution", "img_channels", "mapping_layers", "mapping_lr_multiplier", "channels",
          "channel_base", "channel_max", "conv_clamp", "use_noise", "resample_taps")


class ConfigError(ValueError):
    """A generator configuration field outside its plausible range (the message names field and range)."""


def _int(value: object, field: str, bounds: Tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():  # JSON writers may store 512 as 512.0
            value = int(value)
        else:
            raise ConfigError(f"{field} = {show(value)}: expected an integer in [{bounds[0]}, {bounds[1]}]")
    value = int(value)
    if not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{field} = {show(value)} is implausible: expected an integer in [{bounds[0]}, {bounds[1]}]")
    return value


def _float(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{field} = {show(value)}: expected a number")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{field} = {value}: expected a finite number")
    return value


def check_config(config: Mapping[str, object], sources: Optional[Mapping[str, str]] = None) -> Dict[str, object]:
    """Validate a generator configuration and return normalised `Generator` keyword arguments.

    config: any subset of `FIELDS` (missing ones take the Generator defaults); `channels` may be
        {resolution: channels} with int or str keys, and entries beyond the resolution are dropped.
    sources: optional {field: where it came from} appended to error messages ("key style.9.weight").
    Raises ConfigError (a ValueError) naming the first implausible field.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"the generator config is a {type(config).__name__}, expected a mapping of {FIELDS}")
    unknown = sorted(map(str, set(config) - set(FIELDS)))
    if unknown:
        raise ConfigError(f"unknown generator config fields {[show(u) for u in unknown[:5]]}; known: {FIELDS}")
    defaults = dict(z_dim=512, w_dim=512, resolution=1024, img_channels=3, mapping_layers=8,
                    mapping_lr_multiplier=0.01, channels=None, channel_base=32768, channel_max=512,
                    conv_clamp=None, use_noise=True, resample_taps=(1, 3, 3, 1))
    merged = {**defaults, **config}
    try:
        return _check(merged)
    except ConfigError as e:
        field = str(e).split(" ", 1)[0]
        where = (sources or {}).get(field)
        if where:
            raise ConfigError(f"{e} (from {where})") from None
        raise


def _check(c: Dict[str, object]) -> Dict[str, object]:
    out: Dict[str, object] = {}
    out["z_dim"] = _int(c["z_dim"], "z_dim", DIM_RANGE)
    out["w_dim"] = _int(c["w_dim"], "w_dim", DIM_RANGE)
    resolution = _int(c["resolution"], "resolution", RESOLUTION_RANGE)
    if resolution & (resolution - 1):
        raise ConfigError(f"resolution = {resolution}: expected a power of two in {list(RESOLUTION_RANGE)}")
    out["resolution"] = resolution
    out["img_channels"] = _int(c["img_channels"], "img_channels", IMG_CHANNELS_RANGE)
    out["mapping_layers"] = _int(c["mapping_layers"], "mapping_layers", MAPPING_LAYERS_RANGE)
    lr_mul = _float(c["mapping_lr_multiplier"], "mapping_lr_multiplier")
    if not LR_MULTIPLIER_RANGE[0] < lr_mul <= LR_MULTIPLIER_RANGE[1]:
        raise ConfigError(f"mapping_lr_multiplier = {lr_mul}: expected a number in (0, {LR_MULTIPLIER_RANGE[1]}] "
                          "(0 maps every z to the same w)")
    out["mapping_lr_multiplier"] = lr_mul
    resolutions = [2**k for k in range(2, resolution.bit_length())]
    channels = c["channels"]
    if channels is None:
        base = _int(c["channel_base"], "channel_base", (1, 2**24))
        cmax = _int(c["channel_max"], "channel_max", CHANNELS_RANGE)
        channels = {r: min(base // r, cmax) for r in resolutions}
    if not isinstance(channels, Mapping):
        raise ConfigError(f"channels = {show(channels)}: expected a mapping {{resolution: channels}}")
    by_res: Dict[int, object] = {}
    for key, value in channels.items():
        try:
            by_res[int(key)] = value
        except (TypeError, ValueError):
            raise ConfigError(f"channels has the key {show(key)}: expected block resolutions (4, 8, ...)") from None
    missing = [r for r in resolutions if r not in by_res]
    if missing:
        raise ConfigError(f"channels has no entry for resolutions {missing} (got {sorted(by_res)[:12]})")
    out["channels"] = {r: _int(by_res[r], f"channels[{r}]", CHANNELS_RANGE) for r in resolutions}
    clamp = c["conv_clamp"]
    if clamp is not None:
        clamp = _float(clamp, "conv_clamp")
        if not 0 < clamp <= CONV_CLAMP_MAX:
            raise ConfigError(f"conv_clamp = {clamp}: expected None or a number in (0, {CONV_CLAMP_MAX:.0e}] (a clamp "
                              "of 0 or less blanks every image; NVlabs' configs use 256)")
    out["conv_clamp"] = clamp
    use_noise = c["use_noise"]
    if use_noise not in (True, False, 0, 1):
        raise ConfigError(f"use_noise = {show(use_noise)}: expected true or false")
    out["use_noise"] = bool(use_noise)
    taps = c["resample_taps"]
    if isinstance(taps, (str, bytes)) or not hasattr(taps, "__len__") or not hasattr(taps, "__iter__"):
        raise ConfigError(f"resample_taps = {show(taps)}: expected a list of numbers such as [1, 3, 3, 1]")
    if not TAPS_COUNT_RANGE[0] <= len(taps) <= TAPS_COUNT_RANGE[1] or len(taps) % 2:
        raise ConfigError(f"resample_taps has {len(taps)} taps: expected an even count in {list(TAPS_COUNT_RANGE)} "
                          "(the up/down-sampling padding assumes even filters; StyleGAN2 uses [1, 3, 3, 1])")
    taps = [_float(t, "resample_taps") for t in taps]
    if sum(taps) <= 0:
        raise ConfigError(f"resample_taps = {taps}: their sum must be positive (the filter is normalised by it)")
    out["resample_taps"] = taps
    return out


def state_shapes(config: Mapping[str, object]) -> Dict[str, Tuple[int, ...]]:
    """{key: shape} of `Generator(**config).state_dict()`, computed without building anything."""
    c = check_config(config)
    z_dim, w_dim, channels, rgb = c["z_dim"], c["w_dim"], c["channels"], c["img_channels"]
    shapes: Dict[str, Tuple[int, ...]] = {"mapping.w_avg": (w_dim,)}
    features = [z_dim] + [w_dim] * c["mapping_layers"]
    for i in range(c["mapping_layers"]):
        shapes[f"mapping.fc{i}.weight"] = (features[i + 1], features[i])
        shapes[f"mapping.fc{i}.bias"] = (features[i + 1],)

    def styled(name: str, cin: int, cout: int, res: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"{name}.bias"] = (cout,)
        if c["use_noise"]:
            shapes[f"{name}.noise_strength"] = ()
            shapes[f"{name}.noise_const"] = (res, res)
        shapes[f"{name}.affine.weight"] = (cin, w_dim)
        shapes[f"{name}.affine.bias"] = (cin,)

    def torgb(name: str, cin: int) -> None:
        shapes[f"{name}.weight"] = (rgb, cin, 1, 1)
        shapes[f"{name}.bias"] = (rgb,)
        shapes[f"{name}.affine.weight"] = (cin, w_dim)
        shapes[f"{name}.affine.bias"] = (cin,)

    for res, ch in channels.items():
        block = f"synthesis.b{res}"
        if res == 4:
            shapes[f"{block}.const"] = (ch, 4, 4)
        else:
            styled(f"{block}.conv0", channels[res // 2], ch, res)
        styled(f"{block}.conv1", ch, ch, res)
        torgb(f"{block}.torgb", ch)
    return shapes


def state_bytes(config: Mapping[str, object]) -> int:
    """Bytes of the generator's persistent tensors in float32."""
    return 4 * sum(math.prod(shape) for shape in state_shapes(config).values())


__all__ = ["ConfigError", "FIELDS", "check_config", "state_bytes", "state_shapes"]
