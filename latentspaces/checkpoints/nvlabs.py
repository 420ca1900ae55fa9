"""NVlabs stylegan2-ada-pytorch / stylegan3 (StyleGAN2 config) network pickles -> Generator.

The pickle is read by the restricted unpickler in `nvlabs_pickle` (nothing from the file
runs). The architecture comes from the recorded constructor arguments and per-module
attributes (`_init_kwargs`, `conv_clamp`, `use_noise`, `bias_gain`, ...); channel counts
are read from the weight shapes. State-dict names are already this project's names;
the per-layer `resample_filter` buffers are configuration here and are checked, not copied.
NVlabs' fp16 layers (num_fp16_res) are run in float32.
"""

from __future__ import annotations

from typing import Dict

import torch

from ..generator import Generator
from ..errors import CheckpointError
from .nvlabs_pickle import PersistentRecord, load_nvlabs_pickle


def _taps_from_filter(f: torch.Tensor) -> list:
    """Recover 1-D taps from a separable 2-D filter outer(t, t) / sum^2 (up to scale)."""
    t = f.double().sum(dim=0)
    return (t / t.sum()).tolist()


def convert_nvlabs(G_rec: PersistentRecord, path: str = "<pickle>") -> Generator:
    """Build a Generator from the `G_ema` (or `G`) record of an NVlabs pickle."""
    if G_rec.class_name != "Generator":
        raise CheckpointError(f"{path}: G_ema is a {G_rec.class_name!r}, expected an NVlabs 'Generator'")
    kw = dict(G_rec.attr("_init_kwargs") or {})
    if int(kw.get("c_dim", 0) or 0) > 0:
        raise CheckpointError(f"{path}: conditional generator (c_dim={kw['c_dim']}); only unconditional "
                              "StyleGAN2 generators (c_dim = 0) are supported")
    syn = G_rec.child("synthesis")
    syn_modules = dict(syn.attr("_modules") or {})
    if "input" in syn_modules or any(name.startswith("L0_") for name in syn_modules):
        raise CheckpointError(f"{path}: a StyleGAN3 (alias-free) generator; only StyleGAN2 generators "
                              "(stylegan2-ada, or stylegan3's --cfg=stylegan2) are supported")
    sk = dict(kw.get("synthesis_kwargs") or {})
    architecture = sk.get("architecture", "skip")
    if architecture != "skip":
        raise CheckpointError(f"{path}: synthesis architecture {architecture!r}; only 'skip' (the StyleGAN2 "
                              "config-e/f generator and ada's default) is supported")

    sd: Dict[str, torch.Tensor] = {k: v.to(torch.float32) for k, v in G_rec.state_dict().items()}
    z_dim, w_dim = int(kw.get("z_dim", 512)), int(kw.get("w_dim", 512))
    resolution = int(kw.get("img_resolution", 0))
    img_channels = int(kw.get("img_channels", 3))
    mapping = G_rec.child("mapping")
    num_layers = int(mapping.attr("num_layers", (kw.get("mapping_kwargs") or {}).get("num_layers", 8)))
    lr_mul = float(mapping.child("fc0").attr("bias_gain", 0.01))
    if (mapping.attr("_modules") or {}).get("embed") is not None or "mapping.embed.weight" in sd:
        raise CheckpointError(f"{path}: mapping network has a label embedding; conditional models are not supported")

    try:
        channels = {}
        res = 4
        while f"synthesis.b{res}.conv1.weight" in sd:
            channels[res] = sd[f"synthesis.b{res}.conv1.weight"].shape[0]
            res *= 2
        b4conv = syn.child("b4").child("conv1")
    except (KeyError, AttributeError) as e:
        raise CheckpointError(f"{path}: synthesis network layout not recognised ({e})") from e
    if resolution and max(channels, default=0) != resolution:
        raise CheckpointError(f"{path}: img_resolution {resolution} but blocks up to {max(channels, default=0)}")
    conv_clamp = b4conv.attr("conv_clamp")
    use_noise = bool(b4conv.attr("use_noise", True))
    filt = sd.get("synthesis.b8.resample_filter", sd.get("synthesis.b4.conv1.resample_filter"))
    taps = _taps_from_filter(filt) if filt is not None else [1.0, 3.0, 3.0, 1.0]

    G = Generator(z_dim=z_dim, w_dim=w_dim, resolution=max(channels), img_channels=img_channels,
                  mapping_layers=num_layers, mapping_lr_multiplier=lr_mul, channels=channels,
                  conv_clamp=None if conv_clamp is None else float(conv_clamp), use_noise=use_noise,
                  resample_taps=taps)
    ours = G.state_dict()
    for k in [k for k in sd if k.endswith("resample_filter")]:
        expected = G.synthesis.b4.conv1.resample_filter
        if sd[k].shape != expected.shape or not torch.allclose(sd[k], expected, atol=1e-6):
            raise CheckpointError(f"{path}: {k} differs from the other resampling filters; not supported")
        del sd[k]
    unexpected = sorted(set(sd) - set(ours))
    missing = sorted(set(ours) - set(sd))
    if unexpected or missing:
        raise CheckpointError(f"{path}: layout differs from a StyleGAN2 'skip' generator "
                              f"(unexpected keys {unexpected[:6]}, missing {missing[:6]})")
    bad = [k for k in ours if ours[k].shape != sd[k].shape]
    if bad:
        raise CheckpointError(f"{path}: tensor shapes differ from the recorded architecture at {bad[:6]}")
    G.load_state_dict(sd, strict=True)
    return G.eval().requires_grad_(False)


def load_nvlabs(path: str) -> Generator:
    """Read G_ema (else G) from an NVlabs network pickle without executing anything."""
    data = load_nvlabs_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: a pickle, but its top level is a {type(data).__name__}, not the NVlabs "
                              "network dict (training_set_kwargs, G, D, G_ema, augment_pipe)")
    rec = data.get("G_ema") if data.get("G_ema") is not None else data.get("G")
    if not isinstance(rec, PersistentRecord):
        raise CheckpointError(f"{path}: a pickle without a 'G_ema' or 'G' network (keys: {sorted(map(str, data))[:8]})")
    return convert_nvlabs(rec, path)
