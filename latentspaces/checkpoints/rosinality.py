"""rosinality/stylegan2-pytorch checkpoints (`.pt`, also used by e4e, pSp, HFGI, SDIC).

A checkpoint is a torch.save dict with `g_ema` (the generator state dict), optionally `g`,
`d`, `latent_avg` [w_dim] (e4e/pSp: [num_ws, w_dim], whose row mean is used, with a warning) and
`args` (an argparse.Namespace), or a bare generator state dict; e4e/pSp checkpoints hold the generator under `state_dict` with a `decoder.` prefix.
Files are read with `torch.load(weights_only=True)`: nothing in them is executed.

Key mapping (rosinality -> this project's NVlabs-style names):
    style.{i}.*                      -> mapping.fc{i-1}.*           (style.0 is PixelNorm)
    input.input [1, C, 4, 4]         -> synthesis.b4.const [C, 4, 4]
    conv1 / to_rgb1                  -> synthesis.b4.conv1 / b4.torgb
    convs.{2j} / convs.{2j+1}        -> synthesis.b{2^(j+3)}.conv0 / .conv1
    to_rgbs.{j}                      -> synthesis.b{2^(j+3)}.torgb
    *.conv.weight [1, O, I, k, k]    -> *.weight [O, I, k, k]        (no flip)
    *.conv.modulation.*              -> *.affine.*
    *.noise.weight [1]               -> *.noise_strength []
    *.activate.bias / to_rgb bias    -> *.bias [O] / [3]
    noises.noise_0, noise_{2j+1}, noise_{2j+2} -> b4.conv1, b{R}.conv0, b{R}.conv1 .noise_const [R, R]
    latent_avg                       -> mapping.w_avg
Blur and upsample kernels are not weights: they are checked to be the [1, 3, 3, 1] filter.
The declared architecture (key counts, a few shapes) is checked and every tensor's shape, dtype and
finiteness verified before anything is allocated (`validation.build_generator`); a tensor whose
shape has a leading 2 where the layout has a leading 1 is refused, never indexed.
The mapping learning-rate multiplier is not stored in these files; rosinality's default 0.01
is assumed.
"""

from __future__ import annotations

import argparse
import re
import warnings
from typing import Dict, Optional, Tuple

import torch

from ..errors import CheckpointError
from ..generator import Generator
from ..generator.config import show, state_shapes
from .validation import shape_text as _shape
from ..generator.ops import setup_filter
from ..storage import atomic_torch_save
from ..torch_files import MAX_ARCHIVE_BYTES, load_torch_file
from .validation import (MAX_GENERATOR_BYTES, build_generator, check_resample_filter, check_tensor, checked_config,
                         finish, key_indices)

ROSINALITY_LR_MUL = 0.01
W_AVG_SAMPLES = 10_000  # mapping samples used to estimate w_avg when a file has no latent_avg


def _to_state_dict(obj: object, path: str, say_left: bool = True) -> Tuple[Dict[str, object], Optional[object]]:
    """Find the generator state dict (and latent_avg) inside a loaded rosinality-style object; `say_left`: warn
    which other parts a pSp-family file holds."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (rosinality checkpoint or state dict), found {type(obj).__name__}")
    latent_avg = obj.get("latent_avg")
    if "g_ema" in obj and isinstance(obj["g_ema"], dict):
        return obj["g_ema"], latent_avg
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = obj["state_dict"]
        dec = {k[len("decoder."):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith("decoder.")}
        if dec:
            left = sorted({k.split(".")[0] for k in sd if isinstance(k, str) and "." in k} - {"decoder"})
            if left and say_left:   # a pSp-family file (e4e, pSp, HFGI): say what else it holds and what reads it
                warnings.warn(f"{path}: read the generator (decoder.*); left {', '.join(p + '.*' for p in left)} "
                              "(encoders.load_encoder reads an e4e encoder, encoders.load_head an HFGI or SDIC head)",
                              stacklevel=4)
            return dec, latent_avg
    if "style.1.weight" in obj and "input.input" in obj:
        return {k: v for k, v in obj.items() if k != "latent_avg"}, latent_avg
    keys = ", ".join(show(k) for k in list(obj)[:8])
    raise CheckpointError(
        f"{path}: a torch file, but not a rosinality StyleGAN2 generator: no 'g_ema', no 'state_dict' with "
        f"'decoder.*' keys, and no 'style.1.weight'/'input.input' (top-level keys: {keys}). "
        "Supported: rosinality .pt, NVlabs .pkl, latentspaces .safetensors."
    )


def looks_like_rosinality(obj: object) -> bool:
    try:
        _to_state_dict(obj, "", say_left=False)
        return True
    except CheckpointError:
        return False


def _shape_of(sd: Dict[str, object], key: str, ndim: int, path: str) -> Tuple[int, ...]:
    """The shape of sd[key], which must be a tensor with `ndim` dimensions (CheckpointError otherwise)."""
    if key not in sd:
        raise CheckpointError(f"{path}: rosinality key {key!r} is missing; is this a StyleGAN2 generator?")
    value = sd[key]
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        what = f"shape {list(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
        raise CheckpointError(f"{path}: rosinality key {key!r} is {what}; expected a {ndim}-D tensor")
    return tuple(value.shape)


def _declared_config(sd: Dict[str, object], path: str) -> Tuple[dict, dict]:
    """(Generator config, {field: rosinality key it came from}) read from key counts and a few shapes."""
    styles = key_indices(sd, r"style\.(\d{1,9})\.weight", path)
    rgbs = key_indices(sd, r"to_rgbs\.(\d{1,9})\.conv\.weight", path)
    if not styles:
        raise CheckpointError(f"{path}: no mapping layers (rosinality keys style.N.weight); is this a StyleGAN2 generator?")
    n_mlp, n_rgbs = max(styles), max(rgbs, default=-1) + 1
    sources = {"mapping_layers": f"key style.{n_mlp}.weight", "resolution": f"key to_rgbs.{n_rgbs - 1}.conv.weight"}
    # Counts are bounded before any shape is read, so a key like style.10000000.weight costs nothing.
    config = checked_config({"mapping_layers": n_mlp, "resolution": 2 ** min(n_rgbs + 2, 64)}, path, sources)
    z_w = _shape_of(sd, "style.1.weight", 2, path)
    channels = {4: _shape_of(sd, "conv1.conv.weight", 5, path)[1]}
    for j in range(n_rgbs):
        channels[2 ** (j + 3)] = _shape_of(sd, f"convs.{2 * j}.conv.weight", 5, path)[1]
    config.update(z_dim=z_w[1], w_dim=z_w[0], mapping_lr_multiplier=ROSINALITY_LR_MUL, channels=channels)
    sources.update(z_dim="style.1.weight", w_dim="style.1.weight")
    return checked_config(config, path, sources), sources


def _latent_avg(value: object, w_dim: int, path: str) -> torch.Tensor:
    """latent_avg as [w_dim]; e4e/pSp store a per-layer [num_ws, w_dim] average, whose row mean is used."""
    if not isinstance(value, torch.Tensor) or value.ndim > 2 or value.numel() > 64 * w_dim:
        what = f"shape {_shape(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
        raise CheckpointError(f"{path}: latent_avg is {what}; expected a tensor [{w_dim}] (or an e4e-style "
                              f"[num_ws, {w_dim}])")
    value = check_tensor("latent_avg", value, None, path)
    if tuple(value.shape) in ((w_dim,), (1, w_dim)):
        return value.reshape(w_dim)
    if value.ndim == 2 and value.shape[1] == w_dim and 1 < value.shape[0] <= 64:
        spread = float((value - value.mean(0)).abs().max())
        warnings.warn(f"{path}: latent_avg has shape {list(value.shape)} (an e4e/pSp per-layer average); using the "
                      f"mean of its rows as w_avg (rows differ by at most {spread:.3g})", stacklevel=3)
        return value.mean(0)
    raise CheckpointError(f"{path}: latent_avg has shape {list(value.shape)}; expected [{w_dim}] "
                          f"(or an e4e-style [num_ws, {w_dim}])")


def convert_rosinality(sd: Dict[str, object], latent_avg: Optional[object], path: str = "<state dict>",
                       max_bytes: int = MAX_GENERATOR_BYTES, verify_output: bool = True) -> Generator:
    """Build a Generator from a rosinality `g_ema` state dict (checked before anything is allocated)."""
    config, sources = _declared_config(sd, path)
    out: Dict[str, object] = {}
    used = set()

    def take(key: str, shape: Tuple[int, ...], squeeze: int = 0) -> object:
        """sd[key], whose shape must be `shape` padded on the left by `squeeze` ones; those dims are dropped."""
        if key not in sd:
            raise CheckpointError(f"{path}: rosinality key {key!r} is missing")
        used.add(key)
        value, expected = sd[key], (1,) * squeeze + tuple(shape)
        # never squeeze or index silently: [2, ...] is not [1, ...]
        if isinstance(value, torch.Tensor) and tuple(value.shape) != expected:
            raise CheckpointError(f"{path}: rosinality key {key!r} has shape {_shape(value.shape)}; the "
                                  f"architecture declared by the file implies {_shape(expected)}")
        return check_tensor(key, value, expected, path).reshape(shape)

    shapes = state_shapes(config)
    for i in range(1, config["mapping_layers"] + 1):
        out[f"mapping.fc{i - 1}.weight"] = take(f"style.{i}.weight", shapes[f"mapping.fc{i - 1}.weight"])
        out[f"mapping.fc{i - 1}.bias"] = take(f"style.{i}.bias", shapes[f"mapping.fc{i - 1}.bias"])
    out["synthesis.b4.const"] = take("input.input", shapes["synthesis.b4.const"], squeeze=1)

    def styled(src: str, dst: str, noise_key: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight", shapes[f"{dst}.weight"], squeeze=1)
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight", shapes[f"{dst}.affine.weight"])
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias", shapes[f"{dst}.affine.bias"])
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight", (), squeeze=1)
        out[f"{dst}.bias"] = take(f"{src}.activate.bias", shapes[f"{dst}.bias"])
        if f"{src}.conv.blur.kernel" in sd:
            used.add(f"{src}.conv.blur.kernel")
            check_resample_filter(sd[f"{src}.conv.blur.kernel"], f"{src}.conv.blur.kernel", path, (4, 4))
        if noise_key in sd:
            out[f"{dst}.noise_const"] = take(noise_key, shapes[f"{dst}.noise_const"], squeeze=2)

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight", shapes[f"{dst}.weight"], squeeze=1)
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight", shapes[f"{dst}.affine.weight"])
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias", shapes[f"{dst}.affine.bias"])
        rgb = shapes[f"{dst}.bias"][0]
        out[f"{dst}.bias"] = take(f"{src}.bias", (1, rgb, 1, 1)).reshape(rgb)
        if f"{src}.upsample.kernel" in sd:
            used.add(f"{src}.upsample.kernel")
            check_resample_filter(sd[f"{src}.upsample.kernel"], f"{src}.upsample.kernel", path, (4, 4))

    styled("conv1", "synthesis.b4.conv1", "noises.noise_0")
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for j in range(len(config["channels"]) - 1):
        r = 2 ** (j + 3)
        styled(f"convs.{2 * j}", f"synthesis.b{r}.conv0", f"noises.noise_{2 * j + 1}")
        styled(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", f"noises.noise_{2 * j + 2}")
        to_rgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb")
    unused = sorted(k for k in sd if k not in used and not re.fullmatch(r"noises\.noise_\d{1,9}", k))
    if unused:
        raise CheckpointError(f"{path}: unexpected rosinality keys {[show(k) for k in unused[:6]]} "
                              "(architecture not supported?)")
    if latent_avg is not None:
        out["mapping.w_avg"] = _latent_avg(latent_avg, config["w_dim"], path)

    G = build_generator(config, out, path, sources=sources, max_bytes=max_bytes,
                        optional=lambda k: k.endswith("noise_const") or k == "mapping.w_avg")
    missing_noise = sorted(k for k in G.state_dict() if k.endswith("noise_const") and k not in out)
    if missing_noise:
        # Old checkpoints carry no fixed noise maps: draw them with a fixed seed, so 'const' is reproducible.
        gen = torch.Generator().manual_seed(0)
        for k in missing_noise:
            G.get_buffer(k).copy_(torch.randn(G.get_buffer(k).shape, generator=gen))
    if latent_avg is None:
        G.mapping.w_avg.copy_(estimate_w_avg(G))
    return finish(G, path, verify_output)


def rosinality_state_dict(G: Generator) -> Dict[str, torch.Tensor]:
    """G's weights under rosinality's `g_ema` names (the key-mapping table above, inverted).

    Every tensor is a float32 CPU copy; blur/upsample kernels are included as rosinality stores them.
    Only generators rosinality's model can express are accepted: mapping lr multiplier 0.01, no
    conv clamp, noise inputs, [1, 3, 3, 1] resampling, RGB output.
    """
    cfg = G.config
    if (cfg["mapping_lr_multiplier"] != ROSINALITY_LR_MUL or cfg["conv_clamp"] is not None or not cfg["use_noise"]
            or cfg["resample_taps"] != [1.0, 3.0, 3.0, 1.0] or cfg["img_channels"] != 3):
        raise ValueError(f"rosinality's generator cannot express this config ({cfg}); it needs mapping_lr_multiplier "
                         "0.01, conv_clamp None, use_noise True, resample_taps [1, 3, 3, 1] and 3 channels")
    ours = {k: v.detach().to("cpu", torch.float32).clone() for k, v in G.state_dict().items()}
    blur = setup_filter([1, 3, 3, 1]) * 4
    sd: Dict[str, torch.Tensor] = {}
    for i in range(cfg["mapping_layers"]):
        sd[f"style.{i + 1}.weight"] = ours[f"mapping.fc{i}.weight"]
        sd[f"style.{i + 1}.bias"] = ours[f"mapping.fc{i}.bias"]
    sd["input.input"] = ours["synthesis.b4.const"][None]

    def styled(dst: str, src: str, noise_key: str, up: bool) -> None:
        sd[f"{dst}.conv.weight"] = ours[f"{src}.weight"][None]
        sd[f"{dst}.conv.modulation.weight"] = ours[f"{src}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = ours[f"{src}.affine.bias"]
        sd[f"{dst}.noise.weight"] = ours[f"{src}.noise_strength"].reshape(1)
        sd[f"{dst}.activate.bias"] = ours[f"{src}.bias"]
        if up:
            sd[f"{dst}.conv.blur.kernel"] = blur.clone()
        sd[noise_key] = ours[f"{src}.noise_const"][None, None]

    def to_rgb(dst: str, src: str, up: bool) -> None:
        sd[f"{dst}.conv.weight"] = ours[f"{src}.weight"][None]
        sd[f"{dst}.conv.modulation.weight"] = ours[f"{src}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = ours[f"{src}.affine.bias"]
        sd[f"{dst}.bias"] = ours[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            sd[f"{dst}.upsample.kernel"] = blur.clone()

    styled("conv1", "synthesis.b4.conv1", "noises.noise_0", False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", False)
    for j, r in enumerate(sorted(cfg["channels"], key=int)[1:]):
        styled(f"convs.{2 * j}", f"synthesis.b{r}.conv0", f"noises.noise_{2 * j + 1}", True)
        styled(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", f"noises.noise_{2 * j + 2}", False)
        to_rgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb", True)
    return sd


def save_rosinality(G: Generator, path: str) -> None:
    """Write G as a rosinality checkpoint {'g_ema': ..., 'latent_avg': [w_dim]} (torch.save, atomically)."""
    atomic_torch_save({"g_ema": rosinality_state_dict(G), "latent_avg": G.w_avg.detach().cpu().float().clone()}, path)


@torch.no_grad()
def estimate_w_avg(G: Generator, samples: int = W_AVG_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Mean of mapping(z) over `samples` z ~ N(0, I) drawn with `seed` ([w_dim])."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    for start in range(0, samples, 2000):
        z = torch.randn(min(2000, samples - start), G.z_dim, generator=gen)
        total += G.mapping(z).double().sum(0)
    return (total / samples).float()


ROSINALITY_GLOBALS = (argparse.Namespace,)   # the one class a rosinality file may name (its training args)


def load_rosinality_object(obj: object, path: str, max_bytes: int = MAX_GENERATOR_BYTES,
                           verify_output: bool = True) -> Generator:
    """A Generator from what a weights-only torch.load of a rosinality-style file returned."""
    sd, latent_avg = _to_state_dict(obj, path)
    return convert_rosinality(sd, latent_avg, path, max_bytes, verify_output)


def load_rosinality(path: str, max_bytes: int = MAX_GENERATOR_BYTES, verify_output: bool = True) -> Generator:
    """Read a rosinality checkpoint with a weights-only torch.load (argparse.Namespace allowed), sized first
    (`latentspaces.torch_files.load_torch_file`: uncompressed records within `max_bytes`, no stride-0 views)."""
    obj = load_torch_file(path, "rosinality checkpoint", ROSINALITY_GLOBALS, max_bytes=max(max_bytes, MAX_ARCHIVE_BYTES))
    return load_rosinality_object(obj, path, max_bytes, verify_output)
