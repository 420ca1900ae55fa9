"""Direction finders: GANSpace, InterfaceGAN, SeFa, random.

- GANSpace (Harkonen et al., "GANSpace: Discovering Interpretable GAN Controls"): PCA of W samples; Z-space
  counterparts by least squares back to Z ("Revisiting Latent Space of GAN Inversion", Eq. 6): with coordinates x_j = V^T (w_j - mu), n_k = argmin_n sum_j ||n x_j^k - z_j||^2
  = sum_j x_j^k z_j / sum_j (x_j^k)^2.
- InterfaceGAN (Shen et al.): linear SVM separating the top and bottom `fraction` of samples by an
  attribute score; the unit normal of the hyperplane; conditional directions by projecting out others.
- SeFa (Shen & Zhou): eigenvectors of A A^T, A = the stacked style-affine weights of the chosen layers
  with each style channel's weight vector normalised.
- Random: n ~ N(0, std^2 I) (std 0.2, i.e. N(0, 0.04 I), the robustness study of
  "Revisiting Latent Space of GAN Inversion", Fig. 3).

PCA and SVM come from scikit-learn; eigen-decompositions from NumPy.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from ..progress import progress_bar, status
from .direction import Direction


GANSPACE_SAMPLES = 300_000   # W samples of GANSpace's PCA ("GANSpace: Discovering Interpretable GAN Controls")


@torch.no_grad()
def _sample_zw(G, n: int, seed: int, batch: int = 10_000, desc: str = "mapping samples"):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    zs, ws = [], []
    for start in progress_bar(range(0, n, batch), desc=desc, unit="batch", disable=n <= batch):
        z = torch.randn(min(batch, n - start), G.z_dim, generator=gen)
        zs.append(z)
        ws.append(G.mapping(z.to(G.w_avg.device)).cpu())
    return torch.cat(zs), torch.cat(ws)


def ganspace(
    G,
    n_samples: int = GANSPACE_SAMPLES,  # W samples for the PCA (GANSpace's 300k; 1e6 in some papers)
    n_components: int = 80,           # principal directions kept
    seed: int = 0,
    kind: str = "w",                  # 'w' (PCA axes) or 'z' (least-squares counterparts, Eq. 6)
    layers: Optional[Sequence[int]] = None,  # ws indices the edits apply to (layer-range edits)
    scale_by_std: bool = False,       # multiply each direction by its axis' standard deviation (e4e's convention)
) -> List[Direction]:
    """Principal directions of W (or their Z counterparts), strongest first.

    W directions are unit axes; Z directions are the least-squares counterparts n_k (Eq. 6), the Z move
    that goes with a unit move along axis k. With `scale_by_std` both are multiplied by the axis' standard
    deviation, so alpha is measured in standard deviations of the PCA coordinate in either space.
    """
    from sklearn.decomposition import IncrementalPCA, PCA

    if kind not in ("w", "z"):
        raise ValueError(f"kind must be 'w' or 'z', got {kind!r}")
    z, w = _sample_zw(G, n_samples, seed, desc=f"GANSpace: {n_samples:,} w samples")
    wn = w.double().numpy()
    status(f"GANSpace: PCA of {n_samples:,} w samples ({n_components} components) ...")
    if n_samples <= 200_000:
        pca = PCA(n_components=n_components, svd_solver="full").fit(wn)
    else:
        pca = IncrementalPCA(n_components=n_components, batch_size=20_000).fit(wn)
    comps, std = pca.components_, np.sqrt(pca.explained_variance_)  # [K, D] unit rows
    if kind == "z":
        x = (wn - pca.mean_) @ comps.T                                   # [M, K] coordinates
        vecs = (x.T @ z.double().numpy()) / (x**2).sum(0)[:, None]       # [K, z_dim], Eq. 6 closed form
    else:
        vecs = comps
    out = []
    for k, v in enumerate(vecs):
        vec = torch.from_numpy(v).float()
        if scale_by_std:  # scaled in float32, as the callers that scaled by hand did
            vec = vec * float(std[k])
        out.append(Direction(vec, kind, layers=layers, name=f"ganspace_{k}", method="ganspace",
                             meta={"std": float(std[k]), "explained_variance_ratio": float(pca.explained_variance_ratio_[k]),
                                   "n_samples": n_samples, "seed": seed, "scaled_by_std": scale_by_std}))
    return out


def interfacegan(
    G,
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],  # (images [B,3,R,R], ws [B,num_ws,w_dim]) -> [B]
    n_samples: int = 10_000,          # generated samples to score
    fraction: float = 0.02,           # top and bottom fraction used as positives / negatives
    seed: int = 0,
    kind: str = "w",                  # 'w' or 'z': the code the SVM separates
    condition_on: Sequence[Direction] = (),  # directions to stay orthogonal to (conditional editing)
    batch: int = 64,
    truncation_psi: float = 1.0,
    name: str = "attribute",
    progress: bool = True,
) -> Direction:
    """Unit normal of a linear SVM between the highest- and lowest-scoring samples (70/30 split)."""
    from sklearn.svm import LinearSVC

    if kind not in ("w", "z"):
        raise ValueError(f"kind must be 'w' or 'z', got {kind!r}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    codes, scores = [], []
    device = G.w_avg.device
    for start in progress_bar(range(0, n_samples, batch), desc=f"InterfaceGAN {name}", disable=not progress):
        z = torch.randn(min(batch, n_samples - start), G.z_dim, generator=gen).to(device)
        with torch.no_grad():
            w = G.mapping(z, truncation_psi=truncation_psi)
            img = G.synthesis(G.broadcast(w))
            s = score(img, G.broadcast(w)).reshape(-1).float().cpu()
        codes.append((z if kind == "z" else w).cpu())
        scores.append(s)
    codes, scores = torch.cat(codes).double().numpy(), torch.cat(scores).numpy()
    k = max(2, int(round(fraction * n_samples)))
    order = np.argsort(scores)
    neg, pos = order[:k], order[-k:]
    perm = np.random.default_rng(seed).permutation(2 * k)
    x = np.concatenate([codes[pos], codes[neg]])[perm]
    y = np.concatenate([np.ones(k), np.zeros(k)])[perm]
    split = int(0.7 * 2 * k)
    svm = LinearSVC(C=1.0, max_iter=20_000).fit(x[:split], y[:split])
    acc = float((svm.predict(x[split:]) == y[split:]).mean()) if split < 2 * k else float("nan")
    normal = torch.from_numpy(svm.coef_.reshape(-1)).float()
    normal = normal / normal.norm()
    if condition_on:
        normal = orthogonalize(normal, [c.vector for c in condition_on])
    return Direction(normal, kind, name=name, method="interfacegan",
                     meta={"val_accuracy": acc, "n_samples": n_samples, "fraction": fraction, "seed": seed,
                           "conditioned_on": [c.name for c in condition_on]})


def orthogonalize(vector: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    """Unit vector of `vector` with the span of `others` projected out (conditional InterfaceGAN)."""
    basis: List[torch.Tensor] = []
    for o in others:  # Gram-Schmidt on the conditions first
        o = o.reshape(-1).double()
        for b in basis:
            o = o - (o @ b) * b
        if o.norm() > 1e-8:
            basis.append(o / o.norm())
    v = vector.reshape(-1).double()
    for b in basis:
        v = v - (v @ b) * b
    if v.norm() < 1e-8:
        raise ValueError("the direction lies in the span of the conditions; nothing is left after projection")
    return (v / v.norm()).float()


def sefa(G, layers: Optional[Sequence[str]] = None, n_components: int = 20) -> List[Direction]:
    """SeFa directions [w_dim] for style layers `layers` (names; default: every layer), strongest first.

    The edit applies to the ws read by those layers (Direction.layers).
    """
    syn = G.synthesis
    names = list(layers) if layers is not None else list(syn.layer_names)
    weights = []
    for name in names:
        aff = syn.layer(name).affine
        weights.append((aff.weight * aff.weight_gain).detach().cpu().double().numpy().T)  # [w_dim, C]
    a = np.concatenate(weights, axis=1)
    a = a / np.linalg.norm(a, axis=0, keepdims=True)
    vals, vecs = np.linalg.eigh(a @ a.T)
    order = np.argsort(vals)[::-1][:n_components]
    ws_layers = sorted({syn.w_index[n] for n in names})
    return [Direction(torch.from_numpy(vecs[:, i].copy()).float(), "w", layers=ws_layers, name=f"sefa_{k}",
                      method="sefa", meta={"eigenvalue": float(vals[i]), "style_layers": names})
            for k, i in enumerate(order)]


def random_directions(n: int, dim: int, kind: str = "z", std: float = 0.2, seed: int = 0) -> List[Direction]:
    """n directions with i.i.d. N(0, std^2) entries (std 0.2 = N(0, 0.04 I), the robustness study of
    "Revisiting Latent Space of GAN Inversion", Fig. 3)."""
    gen = torch.Generator().manual_seed(seed)
    return [Direction(torch.randn(dim, generator=gen) * std, kind, name=f"random_{i}", method="random",
                      meta={"std": std, "seed": seed}) for i in range(n)]
