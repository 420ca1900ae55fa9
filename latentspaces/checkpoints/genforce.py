"""genforce StyleGAN2 checkpoints (`.pth`: what BDInvert and "Revisiting Latent Space of GAN Inversion" load).

genforce's converter writes `torch.save({'generator': G, 'discriminator': D, 'generator_smooth': Gs})` (the EMA
generator Gs is the one the papers render with; `generator` is read when it is alone). Weights are stored raw, as
NVlabs stores them, and scaled at run time. Key mapping (genforce -> this project's NVlabs-style names):

    mapping.dense{i}.*                       -> mapping.fc{i}.*
    truncation.w_avg [w_dim]                 -> mapping.w_avg
    synthesis.early_layer.const [1, C, 4, 4] -> synthesis.b4.const [C, 4, 4]
    synthesis.layer0.*                       -> synthesis.b4.conv1.*
    synthesis.layer{2k-1}.* / layer{2k}.*    -> synthesis.b{2^(k+2)}.conv0.* / .conv1.*
    synthesis.output{k}.*                    -> synthesis.b{2^(k+2)}.torgb.*
    *.style.weight / *.style.bias            -> *.affine.weight / *.affine.bias + 1 (genforce adds the 1 at run time)
    *.noise [1, 1, R, R]                     -> *.noise_const [R, R]
    conv0 (upsampling) weights               -> flipped in both spatial dims (genforce flips them at run time
                                                before its transposed convolution; NVlabs stores them flipped)
    *.filter.kernel, synthesis.upsample.kernel: checked to be the [1, 3, 3, 1] filter (x 4), not weights

The mapping's learning-rate multiplier is not stored; genforce's default 0.01 is assumed. genforce's layer
`x03` (BDInvert's base-code layer at 1024 px) is `synthesis.b16.conv0`. Checked against genforce's own
generator (random weights) to 2.4e-5 in the image, the base-code injection included (BENCHMARKS.md).
"""

from __future__ import annotations

import warnings
from typing import Dict, Mapping, Tuple

import torch

from ..errors import CheckpointError
from ..generator import Generator
from ..generator.config import show, state_shapes
from ..generator.ops import setup_filter
from .validation import (MAX_GENERATOR_BYTES, build_generator, check_resample_filter, check_tensor, checked_config,
                         finish, key_indices)
from .validation import shape_text as _shape

GENFORCE_LR_MUL = 0.01
GENFORCE_PARTS = ("generator_smooth", "generator")   # the generator read, in order of preference


def looks_like_genforce(obj: object) -> bool:
    """True for a genforce checkpoint: a dict whose 'generator_smooth' or 'generator' holds genforce's names."""
    return isinstance(obj, dict) and any(
        isinstance(obj.get(part), dict) and "synthesis.early_layer.const" in obj[part] for part in GENFORCE_PARTS)


def genforce_state(obj: Mapping[str, object], path: str) -> Dict[str, object]:
    """The generator state dict of a genforce checkpoint ('generator_smooth' first), saying which parts it left."""
    part = next(p for p in GENFORCE_PARTS if isinstance(obj.get(p), dict) and "synthesis.early_layer.const" in obj[p])
    left = sorted(str(k) for k in obj if k != part)
    if left:
        warnings.warn(f"{path}: read the generator {part!r}; left {', '.join(left)}", stacklevel=4)
    return dict(obj[part])


def _declared_config(sd: Mapping[str, object], path: str) -> Tuple[dict, dict]:
    """(Generator config, {field: the key it came from}) from key counts and a few shapes."""
    dense = key_indices(sd, r"mapping\.dense(\d{1,9})\.weight", path)
    outputs = key_indices(sd, r"synthesis\.output(\d{1,9})\.weight", path)
    if not dense or not outputs:
        raise CheckpointError(f"{path}: no mapping.dense*.weight or synthesis.output*.weight: not a genforce StyleGAN2 "
                              "generator")
    n_out = max(outputs) + 1
    sources = {"mapping_layers": f"key mapping.dense{max(dense)}.weight",
               "resolution": f"key synthesis.output{n_out - 1}.weight"}
    config = checked_config({"mapping_layers": max(dense) + 1, "resolution": 2 ** min(n_out + 1, 64)}, path, sources)

    def shape(key: str, ndim: int) -> Tuple[int, ...]:
        value = sd.get(key)
        if not isinstance(value, torch.Tensor) or value.ndim != ndim:
            raise CheckpointError(f"{path}: genforce key {key!r} is missing or not a {ndim}-D tensor")
        return tuple(value.shape)

    w_dim, z_dim = shape("mapping.dense0.weight", 2)
    channels = {4: shape("synthesis.early_layer.const", 4)[1]}
    for k in range(1, n_out):
        channels[2 ** (k + 2)] = shape(f"synthesis.layer{2 * k - 1}.weight", 4)[0]
    config.update(z_dim=z_dim, w_dim=w_dim, mapping_lr_multiplier=GENFORCE_LR_MUL, channels=channels)
    sources.update(z_dim="mapping.dense0.weight", w_dim="mapping.dense0.weight")
    return checked_config(config, path, sources), sources


def convert_genforce(obj: Mapping[str, object], path: str = "<genforce checkpoint>",
                     max_bytes: int = MAX_GENERATOR_BYTES, verify_output: bool = True) -> Generator:
    """Build a Generator from a genforce checkpoint (checked whole before anything is allocated)."""
    sd = genforce_state(obj, path)
    config, sources = _declared_config(sd, path)
    shapes = state_shapes(config)
    out: Dict[str, object] = {}
    used = set()

    def take(key: str, shape: Tuple[int, ...]) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"{path}: genforce key {key!r} is missing")
        used.add(key)
        value = sd[key]
        if isinstance(value, torch.Tensor) and tuple(value.shape) != tuple(shape):   # never reshaped or indexed
            raise CheckpointError(f"{path}: genforce key {key!r} has shape {_shape(value.shape)}; the architecture "
                                  f"declared by the file implies {_shape(shape)}")
        return check_tensor(key, value, tuple(shape), path)

    for i in range(config["mapping_layers"]):
        for part in ("weight", "bias"):
            out[f"mapping.fc{i}.{part}"] = take(f"mapping.dense{i}.{part}", shapes[f"mapping.fc{i}.{part}"])
    out["mapping.w_avg"] = take("truncation.w_avg", shapes["mapping.w_avg"])
    out["synthesis.b4.const"] = take("synthesis.early_layer.const", (1, *shapes["synthesis.b4.const"]))[0]

    def layer(src: str, dst: str, noise: bool = True, up: bool = False) -> None:
        weight = take(f"{src}.weight", shapes[f"{dst}.weight"])
        out[f"{dst}.weight"] = weight.flip([2, 3]) if up else weight
        out[f"{dst}.bias"] = take(f"{src}.bias", shapes[f"{dst}.bias"])
        out[f"{dst}.affine.weight"] = take(f"{src}.style.weight", shapes[f"{dst}.affine.weight"])
        out[f"{dst}.affine.bias"] = take(f"{src}.style.bias", shapes[f"{dst}.affine.bias"]) + 1
        if noise:
            out[f"{dst}.noise_strength"] = take(f"{src}.noise_strength", shapes[f"{dst}.noise_strength"])
            out[f"{dst}.noise_const"] = take(f"{src}.noise", (1, 1, *shapes[f"{dst}.noise_const"]))[0, 0]
        if up:
            used.add(f"{src}.filter.kernel")
            check_resample_filter(sd.get(f"{src}.filter.kernel"), f"{src}.filter.kernel", path, (1, 1, 4, 4))

    layer("synthesis.layer0", "synthesis.b4.conv1")
    layer("synthesis.output0", "synthesis.b4.torgb", noise=False)
    for k in range(1, len(config["channels"])):
        r = 2 ** (k + 2)
        layer(f"synthesis.layer{2 * k - 1}", f"synthesis.b{r}.conv0", up=True)
        layer(f"synthesis.layer{2 * k}", f"synthesis.b{r}.conv1")
        layer(f"synthesis.output{k}", f"synthesis.b{r}.torgb", noise=False)
    if "synthesis.upsample.kernel" in sd:
        used.add("synthesis.upsample.kernel")
        check_resample_filter(sd["synthesis.upsample.kernel"], "synthesis.upsample.kernel", path, (1, 1, 4, 4))
    unused = sorted(k for k in sd if k not in used)
    if unused:
        raise CheckpointError(f"{path}: unexpected genforce keys {', '.join(show(k) for k in unused[:6])} "
                              "(architecture not supported?)")
    G = build_generator(config, out, path, sources=sources, max_bytes=max_bytes)
    return finish(G, path, verify_output)


def genforce_state_dict(G: Generator) -> Dict[str, torch.Tensor]:
    """G's weights under genforce's names and conventions (the mapping above, inverted): float32 CPU copies, the
    resampling filters included. Only generators genforce's StyleGAN2 can express are accepted (mapping lr
    multiplier 0.01, no conv clamp, noise inputs, [1, 3, 3, 1] resampling, RGB)."""
    cfg = G.config
    if (cfg["mapping_lr_multiplier"] != GENFORCE_LR_MUL or cfg["conv_clamp"] is not None or not cfg["use_noise"]
            or cfg["resample_taps"] != [1.0, 3.0, 3.0, 1.0] or cfg["img_channels"] != 3):
        raise ValueError(f"genforce's generator cannot express this config ({cfg})")
    ours = {k: v.detach().to("cpu", torch.float32).clone() for k, v in G.state_dict().items()}
    kernel = (setup_filter([1, 3, 3, 1]) * 4)[None, None]
    sd: Dict[str, torch.Tensor] = {}
    for i in range(cfg["mapping_layers"]):
        sd[f"mapping.dense{i}.weight"], sd[f"mapping.dense{i}.bias"] = ours[f"mapping.fc{i}.weight"], ours[f"mapping.fc{i}.bias"]
    sd["truncation.w_avg"] = ours["mapping.w_avg"]
    sd["synthesis.early_layer.const"] = ours["synthesis.b4.const"][None]

    def layer(dst: str, src: str, noise: bool = True, up: bool = False) -> None:
        sd[f"{dst}.weight"] = ours[f"{src}.weight"].flip([2, 3]) if up else ours[f"{src}.weight"]
        sd[f"{dst}.bias"] = ours[f"{src}.bias"]
        sd[f"{dst}.style.weight"], sd[f"{dst}.style.bias"] = ours[f"{src}.affine.weight"], ours[f"{src}.affine.bias"] - 1
        if noise:
            sd[f"{dst}.noise_strength"] = ours[f"{src}.noise_strength"]
            sd[f"{dst}.noise"] = ours[f"{src}.noise_const"][None, None]
        if up:
            sd[f"{dst}.filter.kernel"] = kernel.clone()

    layer("synthesis.layer0", "synthesis.b4.conv1")
    layer("synthesis.output0", "synthesis.b4.torgb", noise=False)
    for k, r in enumerate(sorted(cfg["channels"], key=int)[1:], start=1):
        layer(f"synthesis.layer{2 * k - 1}", f"synthesis.b{r}.conv0", up=True)
        layer(f"synthesis.layer{2 * k}", f"synthesis.b{r}.conv1")
        layer(f"synthesis.output{k}", f"synthesis.b{r}.torgb", noise=False)
    sd["synthesis.upsample.kernel"] = kernel.clone()
    return sd


__all__ = ["GENFORCE_LR_MUL", "convert_genforce", "genforce_state", "genforce_state_dict", "looks_like_genforce"]
