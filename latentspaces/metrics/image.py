"""Batched reconstruction metrics on images [N, 3, H, W] in [-1, 1]; each returns [N].

MSE is computed here (one line); PSNR, SSIM and MS-SSIM come from torchmetrics with data_range 2
(the width of [-1, 1]). MS-SSIM uses the standard 5 scales from 176 px up and the first 3
scales (weights renormalised) with a 7 px window below, where 5 scales do not fit.

torchmetrics is imported on first use, not with this module: it pulls in torchvision and
torch._dynamo (about 3.7 s), which every `latentspaces` command paid before parsing its flags.
"""

from __future__ import annotations

from typing import Dict

import torch

MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"metrics compare image batches of equal shape [N, C, H, W], got {tuple(x.shape)} and {tuple(y.shape)}")


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    _check(x, y)
    return (x.float() - y.float()).square().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    _check(x, y)
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(x.float(), y.float(), data_range=2.0, reduction="none", dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    _check(x, y)
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(x.float(), y.float(), data_range=2.0, reduction="none")


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    _check(x, y)
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    if x.shape[-1] >= 176:
        return multiscale_structural_similarity_index_measure(x.float(), y.float(), data_range=2.0, reduction="none")
    betas = MS_SSIM_BETAS[:3]
    betas = tuple(b / sum(betas) for b in betas)
    return multiscale_structural_similarity_index_measure(x.float(), y.float(), data_range=2.0, reduction="none",
                                                          betas=betas, kernel_size=7)


def reconstruction_metrics(x: torch.Tensor, y: torch.Tensor) -> Dict[str, torch.Tensor]:
    """{'mse', 'psnr', 'ssim', 'ms_ssim'} per image ([N] each) of reconstructions x against targets y."""
    with torch.no_grad():
        return {"mse": mse(x, y), "psnr": psnr(x, y), "ssim": ssim(x, y), "ms_ssim": ms_ssim(x, y)}
