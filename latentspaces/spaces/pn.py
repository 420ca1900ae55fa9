"""P_N: the PCA-whitened P space, p = LeakyReLU(slope 5)(w) (BDInvert; Barbershop; Zhu et al. 2020).

P undoes the mapping network's last leaky ReLU (slope 0.2), where w is closer to Gaussian;
whitening with PCA statistics of mapping samples gives v = (p - mu) V / sqrt(lambda), whose
squared norm is a Mahalanobis-style prior. Used as a space (v is the code) and as a penalty
for W / W+ codes: pn_lambda * mean(v^2) (0.01 in BDInvert, 0.001 in Barbershop).

Statistics are fitted with scikit-learn's PCA (IncrementalPCA above 200k samples) on
`n_samples` mapping outputs (1e6 in the papers) and cached on disk, keyed by a hash of the
mapping network's weights, the sample count and the seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..fingerprints import mapping_fingerprint
from ..progress import progress_bar, status
from ..storage import load_tensors, save_tensors
from .base import LatentSpace
from .code import Code
from .manifolds import WhitenedChart

PN_STATS_FORMAT = "latentspaces.pn_stats"
P_SLOPE = 5.0  # inverse of the mapping network's leaky ReLU slope 0.2
IN_MEMORY_PCA_LIMIT = 200_000


def cache_dir() -> Path:
    """$LATENTSPACES_CACHE, else ~/.cache/latentspaces."""
    return Path(os.environ.get("LATENTSPACES_CACHE", Path.home() / ".cache" / "latentspaces"))


mapping_hash = mapping_fingerprint   # the key of every mapping statistic (the name P_N's cache has used)


class PNStats:
    """PCA statistics of p = LeakyReLU(5)(w): mean [D], components [D, D] (rows), std [D] = sqrt(variance)."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, std: torch.Tensor):
        d = mean.shape[0]
        if components.shape != (d, d) or std.shape != (d,):
            raise ValueError(f"P_N statistics need mean [D], components [D, D], std [D]; got "
                             f"{tuple(mean.shape)}, {tuple(components.shape)}, {tuple(std.shape)}")
        self.mean, self.components, self.std = (t.float().contiguous() for t in (mean, components, std))

    def to(self, device) -> "PNStats":
        """The statistics on another device."""
        return PNStats(self.mean.to(device), self.components.to(device), self.std.to(device))

    def whiten(self, w: torch.Tensor) -> torch.Tensor:
        """w [..., D] -> v [..., D]."""
        p = F.leaky_relu(w, P_SLOPE)
        return ((p - self.mean.to(w.device)) @ self.components.to(w.device).t()) / self.std.to(w.device)

    def unwhiten(self, v: torch.Tensor) -> torch.Tensor:
        """v [..., D] -> w [..., D] (exact inverse of whiten)."""
        p = (v * self.std.to(v.device)) @ self.components.to(v.device) + self.mean.to(v.device)
        return F.leaky_relu(p, 1.0 / P_SLOPE)

    @classmethod
    @torch.no_grad()
    def fit(cls, G, n_samples: int = 1_000_000, seed: int = 0, batch: int = 20_000, use_cache: bool = True,
            progress: bool = True) -> "PNStats":
        """Fit on `n_samples` mapping outputs of z ~ N(0, I) drawn with `seed`; cached on disk."""
        from sklearn.decomposition import PCA, IncrementalPCA

        path = cache_dir() / "pn" / f"{mapping_hash(G)}_n{n_samples}_s{seed}.safetensors"
        if use_cache and path.is_file():
            t, _ = load_tensors(path)  # also reads caches written before the storage layer's header convention
            return cls(t["mean"], t["components"], t["std"])
        gen = torch.Generator(device="cpu").manual_seed(seed)
        device = G.w_avg.device

        def chunks():
            for start in range(0, n_samples, batch):
                z = torch.randn(min(batch, n_samples - start), G.z_dim, generator=gen).to(device)
                yield F.leaky_relu(G.mapping(z), P_SLOPE).double().cpu().numpy()

        bar = progress_bar(total=n_samples, desc="P_N statistics", unit="w", disable=not progress)
        if n_samples <= IN_MEMORY_PCA_LIMIT:
            parts = []
            for p in chunks():
                parts.append(p)
                bar.update(len(p))
            bar.close()
            if progress:   # the full PCA after the last sample takes about as long as the sampling
                status(f"P_N statistics: PCA of {n_samples:,} samples (cached for the next run) ...")
            pca = PCA(svd_solver="full").fit(np.concatenate(parts))
        else:
            pca = IncrementalPCA(batch_size=batch)
            for p in chunks():
                if len(p) >= G.w_dim:  # IncrementalPCA needs at least D samples per batch
                    pca.partial_fit(p)
                bar.update(len(p))
        bar.close()
        stats = cls(torch.from_numpy(pca.mean_).float(), torch.from_numpy(pca.components_).float(),
                    torch.from_numpy(np.sqrt(np.maximum(pca.explained_variance_, 1e-12))).float())
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_tensors(path, {"mean": stats.mean, "components": stats.components, "std": stats.std},
                         PN_STATS_FORMAT, 1, n_samples=n_samples, seed=seed)
        return stats


class PN(LatentSpace):
    """Whitened P codes v: [N, num_ws, w_dim] (plus=True, default) or [N, w_dim]; v = 0 is the P mean.

    Edits take W directions: v -> w, w + alpha n, -> v (exact, through the inverse whitening: `WhitenedChart`).
    """

    kind, edit_field = "w", "v"
    uses_pn_stats = True

    def __init__(self, G, stats: Optional[PNStats] = None, plus: bool = True, pn_lambda: float = 0.001,
                 n_samples: int = 1_000_000, **kwargs):
        """stats: fitted PNStats (fitted with n_samples and cached when None); pn_lambda: penalty weight."""
        super().__init__(G, **kwargs)
        self.stats = (stats or PNStats.fit(G, n_samples=n_samples)).to(self.device)
        self.plus, self.per_layer, self.pn_lambda = plus, plus, pn_lambda
        self.ws_layout = "per_layer" if plus else "shared"
        self.manifolds["v"] = WhitenedChart(self.stats)  # edits step in W, exactly through the inverse whitening

    def _shape(self, n: int) -> tuple:
        return (n, self.G.num_ws, self.G.w_dim) if self.plus else (n, self.G.w_dim)

    def random(self, n: int, seed: int = 0) -> Code:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(*self._shape(n)[:-1], self.G.z_dim, generator=gen).to(self.device)
        return Code(v=self.stats.whiten(self.G.mapping(z)))

    def mean(self, n: int) -> Code:
        return Code(v=torch.zeros(self._shape(n), device=self.device))

    def from_ws(self, ws: torch.Tensor) -> Code:
        if self.plus:
            return Code(v=self.stats.whiten(self.G.broadcast(ws)))
        if ws.ndim == 3:
            if not torch.allclose(ws, ws[:, :1].expand_as(ws)):
                raise ValueError("single-code PN needs the same w in every layer; use PN(G, plus=True)")
            ws = ws[:, 0]
        return Code(v=self.stats.whiten(ws))

    def to_ws(self, code: Code) -> torch.Tensor:
        return self.G.broadcast(self.stats.unwhiten(code.v))

    def penalty(self, code: Code) -> Dict[str, torch.Tensor]:
        return {"pn": self.pn_lambda * code.v.square().flatten(1).mean(1)}
