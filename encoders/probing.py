"""The output check of a loaded encoder or head: one forward pass on fixed inputs, finite and of plausible size.

Every weight of a file can be finite and bounded (`latentspaces.file_rules.check_tensor`) and the network
still compute nonsense: a BatchNorm `running_var` below zero takes a square root of a negative number, and
gains multiply through depth. So `load_encoder` runs each network's `probe()` (its sub-networks on inputs of
the shapes its config declares, generated here from a fixed seed; no generator needed) and refuses outputs
that are not finite or exceed `MAX_ABS_OUTPUT`.
"""

from __future__ import annotations

from typing import Dict

import torch

from latentspaces.errors import CheckpointError

# Trained networks of this project put out codes, features and images of magnitude below 100 (the 1024 px
# layers' features included); a random initialisation stays below 10. 1e4 is implausible for any of them.
MAX_ABS_OUTPUT = 1e4


def probe_images(size: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    """Fixed smooth images [n, 3, size, size] in [-1, 1] (random at 8 px, upsampled): the probe's targets."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand([n, 3, 8, 8], generator=gen) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def probe_features(channels: int, side: int, n: int = 1, seed: int = 1) -> torch.Tensor:
    """Fixed feature maps [n, channels, side, side] ~ N(0, 1): a generator layer's output stand-in."""
    return torch.randn([n, channels, side, side], generator=torch.Generator().manual_seed(seed))


def check_probe(network: torch.nn.Module, path: str) -> None:
    """CheckpointError naming the file unless every output of `network.probe()` is finite and at most
    `MAX_ABS_OUTPUT` in magnitude (run in eval mode, without gradients, on the network's device)."""
    name = type(network).__name__
    with torch.no_grad():
        try:
            outputs: Dict[str, torch.Tensor] = network.eval().probe()
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as e:  # a config whose sizes do not fit together fails here, not at first use
            raise CheckpointError(f"{path}: the {name} cannot run on inputs of its declared sizes "
                                  f"({type(e).__name__}: {str(e)[:160]})") from None
    for key, value in outputs.items():
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: every weight is finite, but the {name}'s {key} is not (NaN or Inf on a "
                                  "fixed probe input): a damaged statistic such as a negative BatchNorm running_var")
        largest = float(value.abs().max()) if value.numel() else 0.0
        if largest > MAX_ABS_OUTPUT:
            raise CheckpointError(f"{path}: every weight is finite, but the {name}'s {key} reaches {largest:.3g} on a "
                                  f"fixed probe input, over {MAX_ABS_OUTPUT:.0e}; the weights are damaged")


__all__ = ["MAX_ABS_OUTPUT", "check_probe", "probe_features", "probe_images"]
