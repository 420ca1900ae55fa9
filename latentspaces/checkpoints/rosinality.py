"""rosinality/stylegan2-pytorch checkpoints (`.pt`, also used by e4e, pSp, HFGI, SDIC).

A checkpoint is a torch.save dict with `g_ema` (the generator state dict), optionally `g`,
`d`, `latent_avg` [w_dim] and `args` (an argparse.Namespace), or a bare generator state
dict; e4e/pSp checkpoints hold the generator under `state_dict` with a `decoder.` prefix.
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
The mapping learning-rate multiplier is not stored in these files; rosinality's default 0.01
is assumed.
"""

from __future__ import annotations

import argparse
import re
from typing import Dict, Optional, Tuple

import torch

from ..generator import Generator
from ..generator.ops import setup_filter
from ..errors import CheckpointError

ROSINALITY_LR_MUL = 0.01
W_AVG_SAMPLES = 10_000  # mapping samples used to estimate w_avg when a file has no latent_avg


def _to_state_dict(obj: object, path: str) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
    """Find the generator state dict (and latent_avg) inside a loaded rosinality-style object."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (rosinality checkpoint or state dict), found {type(obj).__name__}")
    latent_avg = obj.get("latent_avg") if isinstance(obj.get("latent_avg"), torch.Tensor) else None
    if "g_ema" in obj and isinstance(obj["g_ema"], dict):
        return obj["g_ema"], latent_avg
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = obj["state_dict"]
        dec = {k[len("decoder."):]: v for k, v in sd.items() if k.startswith("decoder.")}
        if dec:
            return dec, latent_avg
    if "style.1.weight" in obj and "input.input" in obj:
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}, latent_avg
    keys = ", ".join(list(obj)[:8])
    raise CheckpointError(
        f"{path}: a torch file, but not a rosinality StyleGAN2 generator: no 'g_ema', no 'state_dict' with "
        f"'decoder.*' keys, and no 'style.1.weight'/'input.input' (top-level keys: {keys}). "
        "Supported: rosinality .pt, NVlabs .pkl, latentspaces .safetensors."
    )


def looks_like_rosinality(obj: object) -> bool:
    try:
        _to_state_dict(obj, "")
        return True
    except CheckpointError:
        return False


def _check_filter(kernel: torch.Tensor, key: str, path: str) -> None:
    expected = setup_filter([1, 3, 3, 1]) * 4
    if kernel.shape != expected.shape or not torch.allclose(kernel.float(), expected, atol=1e-6):
        raise CheckpointError(f"{path}: {key} is not the standard [1,3,3,1] filter x 4; custom blur kernels are not supported")


def convert_rosinality(sd: Dict[str, torch.Tensor], latent_avg: Optional[torch.Tensor], path: str = "<state dict>") -> Generator:
    """Build a Generator from a rosinality `g_ema` state dict."""
    try:
        n_mlp = max(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
        w_dim, z_dim = sd["style.1.weight"].shape[0], sd["style.1.weight"].shape[1]
        n_rgbs = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
        resolution = 2 ** (n_rgbs + 2)
        channels = {4: sd["conv1.conv.weight"].shape[1]}
        for j in range(n_rgbs):
            channels[2 ** (j + 3)] = sd[f"convs.{2 * j}.conv.weight"].shape[1]
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: rosinality state dict is incomplete ({e!r}); is this a StyleGAN2 generator?") from e

    G = Generator(z_dim=z_dim, w_dim=w_dim, resolution=resolution, mapping_layers=n_mlp,
                  mapping_lr_multiplier=ROSINALITY_LR_MUL, channels=channels)
    out: Dict[str, torch.Tensor] = {}
    used = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"{path}: rosinality key {key!r} is missing")
        used.add(key)
        return sd[key].detach().to(torch.float32)

    for i in range(1, n_mlp + 1):
        out[f"mapping.fc{i - 1}.weight"] = take(f"style.{i}.weight")
        out[f"mapping.fc{i - 1}.bias"] = take(f"style.{i}.bias")
    out["synthesis.b4.const"] = take("input.input")[0]

    def styled(src: str, dst: str, noise_key: Optional[str]) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        if f"{src}.conv.blur.kernel" in sd:
            _check_filter(take(f"{src}.conv.blur.kernel"), f"{src}.conv.blur.kernel", path)
        if noise_key in sd:
            out[f"{dst}.noise_const"] = take(noise_key)[0, 0]

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)
        if f"{src}.upsample.kernel" in sd:
            _check_filter(take(f"{src}.upsample.kernel"), f"{src}.upsample.kernel", path)

    styled("conv1", "synthesis.b4.conv1", "noises.noise_0")
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for j in range(n_rgbs):
        r = 2 ** (j + 3)
        styled(f"convs.{2 * j}", f"synthesis.b{r}.conv0", f"noises.noise_{2 * j + 1}")
        styled(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", f"noises.noise_{2 * j + 2}")
        to_rgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb")

    missing_noise = [k for k in G.state_dict() if k.endswith("noise_const") and k not in out]
    if missing_noise:
        # Old checkpoints carry no fixed noise maps: draw them with a fixed seed, so 'const' is reproducible.
        gen = torch.Generator().manual_seed(0)
        for k in missing_noise:
            out[k] = torch.randn(G.state_dict()[k].shape, generator=gen)
    unused = sorted(k for k in sd if k not in used and not k.startswith("noises."))
    if unused:
        raise CheckpointError(f"{path}: unexpected rosinality keys {unused[:6]} (architecture not supported?)")

    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.detach().to(torch.float32).reshape(w_dim)
    try:
        G.load_state_dict(out, strict=latent_avg is not None)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: tensor shapes do not fit a StyleGAN2 generator: {e}") from e
    if latent_avg is None:
        G.mapping.w_avg.copy_(estimate_w_avg(G))
    return G.eval().requires_grad_(False)


@torch.no_grad()
def estimate_w_avg(G: Generator, samples: int = W_AVG_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Mean of mapping(z) over `samples` z ~ N(0, I) drawn with `seed` ([w_dim])."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    for start in range(0, samples, 2000):
        z = torch.randn(min(2000, samples - start), G.z_dim, generator=gen)
        total += G.mapping(z).double().sum(0)
    return (total / samples).float()


def load_rosinality(path: str) -> Generator:
    """Read a rosinality checkpoint with a weights-only torch.load (argparse.Namespace allowed)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for hostile or broken files
        raise CheckpointError(
            f"{path}: could not be read as a torch checkpoint with weights_only=True ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). The file may be truncated, corrupt, or contain "
            "objects other than tensors; nothing from it was executed."
        ) from e
    sd, latent_avg = _to_state_dict(obj, path)
    return convert_rosinality(sd, latent_avg, path)
