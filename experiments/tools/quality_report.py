"""Quality report of the embedded default generator.

    python -m experiments.tools.quality_report --out runs/quality_report [--n 500] [--quick]

Writes into OUT:
  samples_8x8.png       64 samples of the default G (z from seed --grid-seed, noise_mode const)
  quality_report.json   every number below, seeds, settings and seconds taken
  quality_report.md     the same as Markdown (also printed)

Numbers:
  * Frechet distance (FD) in dlib's 128-d face-descriptor space (latentspaces.metrics.identity.DlibIdentity)
    between N images of two sets, for three pairs:
      G       vs data A   the default G against N DCGAN faces (the training domain) from stream --seed-a
      data A' vs data A   a second, disjoint DCGAN set (stream --seed-b): the noise floor of FD at this N
      untrained G vs data A  a freshly initialised generator with the default G's config (the ceiling)
    FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), in float64, sqrt by scipy.linalg.sqrtm (real part).
    FD estimated from N samples is biased upwards; compare FD(G, A) with FD(A', A) at the same N,
    hence the reported ratio FD(G, A) / FD(A', A) (1 would be indistinguishable from the data at this N).
  * Face detection rate per set: DlibIdentity falls back to the whole frame when dlib's HOG detector
    finds no face, so every image gets a descriptor; the headline FD uses all N descriptors of each set,
    FD over the detected faces only is reported beside it.
  * W+ inversion MSE of the 64 shipped held-out targets: HybridInverter(WPlus(G), steps=200, lr=0.05,
    pixel MSE only) from w_avg; mean and std over targets of the final per-image MSE (images in [-1, 1]).

DCGAN seeds must be below HELDOUT_BASE (the held-out targets' seeds) and differ from each other; the
defaults also differ from the trainer's data / noise streams (seeds 1 and 2).
`--quick` (tests): N = 64, 8 targets, 20 inversion steps, 2,000 mapping samples for the untrained w_avg.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from scipy import linalg

import latentspaces as ls
from experiments.argtypes import int_at_least
from latentspaces.assets import heldout_targets
from latentspaces.datasets import HELDOUT_BASE, FaceSampler
from latentspaces.images import save_images
from latentspaces.metrics.identity import DlibIdentity
from latentspaces.progress import progress_bar
from latentspaces.storage import atomic_write_text
from optimizers import HybridInverter

FULL = dict(n=500, targets=64, steps=200, w_avg_samples=100_000)
QUICK = dict(n=64, targets=8, steps=20, w_avg_samples=2_000)
LR = 0.05
BATCH = 50  # images per generator / DCGAN / dlib batch


# ------------------------------------------------------------------ Frechet distance
def gaussian_stats(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (float64) of features [N, D], N >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D], got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                                eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) between two Gaussians, in float64 (>= 0 up to rounding).

    sqrt(S1 S2) by scipy.linalg.sqrtm. S1 S2 is similar to the PSD matrix S1^1/2 S2 S1^1/2, so its
    principal square root is real in exact arithmetic; rounding leaves a tiny imaginary part, which is
    dropped (real part taken). When sqrtm fails (singular covariances, e.g. N <= D) eps is added to
    both diagonals first, as pytorch-fid does.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """FD between the Gaussians fitted to features x [N, D] and y [M, D] (any float dtype; computed in float64)."""
    return frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(y))


# ------------------------------------------------------------------ image sets
@torch.no_grad()
def generator_samples(G: ls.Generator, n: int, seed: int, batch: int = BATCH, desc: str = "G samples") -> torch.Tensor:
    """n images [n, 3, R, R] of G (z ~ N(0, I) from one seeded CPU stream, psi 1, noise_mode const).

    Values are G's raw output, nominally [-1, 1] (overshoot is clamped only where images are used).
    """
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    device = G.w_avg.device
    out = [G(z[i:i + batch].to(device), noise_mode="const").cpu()
           for i in progress_bar(range(0, n, batch), desc=desc, unit="batch", leave=False)]
    return torch.cat(out)


def data_samples(sampler: FaceSampler, n: int, seed: int) -> torch.Tensor:
    """n DCGAN faces [n, 3, 64, 64] in [-1, 1] from stream `seed` (must not reach the held-out seeds)."""
    if not 0 <= seed < HELDOUT_BASE:
        raise ValueError(f"DCGAN seeds must be in [0, {HELDOUT_BASE}) (held-out images use {HELDOUT_BASE} + i), got {seed}")
    return sampler.sample(n, seed).cpu()


@torch.no_grad()
def untrained_generator(config: dict, seed: int, w_avg_samples: int) -> ls.Generator:
    """A freshly initialised Generator(**config) (torch.manual_seed(seed) before construction, as the
    trainer does), its w_avg set to the mean of w_avg_samples mapped z (seed + 3, as the trainer's export).
    w_avg only matters for truncation / mean init; psi-1 samples do not depend on it."""
    torch.manual_seed(seed)
    G = ls.Generator(**config).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed + 3)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    for start in range(0, w_avg_samples, 10_000):
        z = torch.randn(min(10_000, w_avg_samples - start), G.z_dim, generator=gen)
        total += G.mapping(z).double().sum(0)
    G.mapping.w_avg.copy_((total / w_avg_samples).float())
    return G


def descriptors(identity, images: torch.Tensor, desc: str, batch: int = BATCH) -> Tuple[np.ndarray, np.ndarray]:
    """dlib descriptors [N, 128] float64 and face-detected flags [N] bool of images [N, 3, H, W] in [-1, 1].

    Images with no detected face are still described (DlibIdentity's whole-frame fallback)."""
    feats, found = [], []
    for i in progress_bar(range(0, images.shape[0], batch), desc=f"dlib {desc}", unit="batch", leave=False):
        feats.append(identity.embed(images[i:i + batch]).double().numpy())
        found.append(np.asarray(identity.last_detected, dtype=bool))
    return np.concatenate(feats), np.concatenate(found)


def fd_pair(a: Tuple[np.ndarray, np.ndarray], b: Tuple[np.ndarray, np.ndarray]) -> Dict[str, Optional[float]]:
    """FD over all descriptors and over detected faces only (None when a set has < 2 detections)."""
    (fa, da), (fb, db) = a, b
    detected = frechet_distance(fa[da], fb[db]) if da.sum() >= 2 and db.sum() >= 2 else None
    return {"fd": frechet_distance(fa, fb), "fd_detected_only": detected}


# ------------------------------------------------------------------ inversion
def wplus_inversion_mse(G: ls.Generator, targets: torch.Tensor, steps: int, lr: float = LR,
                        chunk: int = 16) -> np.ndarray:
    """Final per-image pixel MSE [N] (images in [-1, 1]) of W+ inversions of targets [N, 3, R, R] from w_avg.

    Pixel MSE only (lambda_per = lambda_reg = 0). Targets are inverted in chunks for the progress bar;
    every image's optimization is independent (summed loss, element-wise Adam), so chunking does not
    change the result."""
    inverter = HybridInverter(ls.WPlus(G), steps=steps, lr=lr, lambda_per=0.0, lambda_reg=0.0, progress=False)
    mse = []
    for i in progress_bar(range(0, targets.shape[0], chunk), desc=f"W+ inversion ({steps} steps)", unit="chunk"):
        result = inverter.invert(targets[i:i + chunk], init="mean")
        mse.append(result.history["mse"][-1].numpy().astype(np.float64))
    return np.concatenate(mse)


# ------------------------------------------------------------------ report
def _fmt(x: Optional[float], digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown_report(r: dict) -> str:
    """The report dict as Markdown."""
    fd, det = r["fd"], r["detection_rate"]
    n = r["settings"]["n"]
    lines = [
        "# Default generator quality report",
        "",
        f"FD in dlib 128-d face-descriptor space, N = {n} images per set (float64; sqrtm real part). "
        "dlib's HOG detector misses some 64 px faces; DlibIdentity then describes the whole frame, so "
        "**FD uses all N descriptors of each set**; FD over detected faces only is given beside it.",
        "",
        "| pair | FD (all N) | FD (detected only) | detection rate (first / second set) |",
        "|---|---|---|---|",
    ]
    names = {"G_vs_A": ("default G vs DCGAN A", "G", "A"), "Aprime_vs_A": ("DCGAN A' vs DCGAN A", "A'", "A"),
             "untrained_vs_A": ("untrained G vs DCGAN A", "untrained", "A")}
    for key, (label, s1, s2) in names.items():
        lines.append(f"| {label} | {_fmt(fd[key]['fd'])} | {_fmt(fd[key]['fd_detected_only'])} | "
                     f"{det[s1]:.1%} / {det[s2]:.1%} |")
    inv = r["inversion"]
    lines += [
        "",
        f"- FD(G, A) / FD(A', A) = **{_fmt(r['ratio_G_over_data'], 2)}** (1 = as close as a second data set)",
        f"- FD(untrained G, A) / FD(A', A) = {_fmt(r['ratio_untrained_over_data'], 2)}",
        f"- FD(untrained G, A) = {_fmt(fd['untrained_vs_A']['fd'])}",
        f"- W+ inversion of {inv['n_targets']} held-out targets ({inv['steps']} steps, lr {inv['lr']}, pixel MSE "
        f"only, init w_avg): final MSE **{inv['mse_mean']:.5f} ± {inv['mse_std']:.5f}** (mean ± std (ddof 0) over targets, "
        f"images in [-1, 1]; min {inv['mse_min']:.5f}, max {inv['mse_max']:.5f})",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    s = r["seeds"]
    lines += [
        f"| N per set | {n} |",
        f"| DCGAN seeds A / A' | {s['data_A']} / {s['data_Aprime']} (held-out base {HELDOUT_BASE}) |",
        f"| G z seed (FD) / grid z seed | {s['G_z']} / {s['grid_z']} |",
        f"| untrained G torch seed / w_avg samples | {s['untrained_init']} / {r['settings']['w_avg_samples']} |",
        f"| quick | {r['settings']['quick']} |",
    ]
    for k, v in r["seconds"].items():
        lines.append(f"| seconds: {k} | {v:.1f} |")
    return "\n".join(lines) + "\n"


def run_quality_report(out: Path, n: int, quick: bool = False, seed_a: int = 101, seed_b: int = 202,
                       g_seed: int = 0, grid_seed: int = 123, untrained_seed: int = 0) -> dict:
    """Compute everything, write OUT/samples_8x8.png, quality_report.json and .md; return the report dict."""
    if seed_a == seed_b:
        raise ValueError(f"the two DCGAN sets need different seeds, got {seed_a} twice")
    cfg = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    seconds: Dict[str, float] = {}
    t_all = t = time.perf_counter()

    G = ls.load_generator("default")
    save_images(generator_samples(G, 64, grid_seed, desc="grid"), out / "samples_8x8.png", nrow=8)
    seconds["grid"] = time.perf_counter() - t

    t = time.perf_counter()
    sampler = FaceSampler("cpu")
    G_untrained = untrained_generator(G.config, untrained_seed, cfg["w_avg_samples"])
    sets = {
        "G": lambda: generator_samples(G, n, g_seed),
        "A": lambda: data_samples(sampler, n, seed_a),
        "A'": lambda: data_samples(sampler, n, seed_b),
        "untrained": lambda: generator_samples(G_untrained, n, g_seed, desc="untrained G samples"),
    }
    identity = DlibIdentity()
    feats: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    for name, make in progress_bar(sets.items(), desc="FD sets", unit="set"):
        feats[name] = descriptors(identity, make(), name)
    fd = {"G_vs_A": fd_pair(feats["G"], feats["A"]), "Aprime_vs_A": fd_pair(feats["A'"], feats["A"]),
          "untrained_vs_A": fd_pair(feats["untrained"], feats["A"])}
    seconds["fd"] = time.perf_counter() - t

    t = time.perf_counter()
    targets = heldout_targets(cfg["targets"])
    mse = wplus_inversion_mse(G, targets, cfg["steps"])
    seconds["inversion"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_all

    floor = fd["Aprime_vs_A"]["fd"]
    report = {
        "fd": fd,
        "ratio_G_over_data": fd["G_vs_A"]["fd"] / floor if floor > 0 else None,
        "ratio_untrained_over_data": fd["untrained_vs_A"]["fd"] / floor if floor > 0 else None,
        "detection_rate": {k: float(d.mean()) for k, (_, d) in feats.items()},
        "detected": {k: int(d.sum()) for k, (_, d) in feats.items()},
        "fd_over": "all N descriptors per set (DlibIdentity describes the whole frame when no face is detected); "
                   "fd_detected_only uses detected faces only",
        "descriptor": "dlib face_recognition_resnet_model_v1 (128-d), DlibIdentity(min_size=256, detect=True, jitter=0)",
        "inversion": {"space": "WPlus", "n_targets": int(mse.size), "steps": cfg["steps"], "lr": LR,
                      "init": "mean", "lambda_per": 0.0, "lambda_reg": 0.0,
                      "mse_mean": float(mse.mean()), "mse_std": float(mse.std()),
                      "mse_min": float(mse.min()), "mse_max": float(mse.max()), "mse_per_image": mse.tolist()},
        "seeds": {"data_A": seed_a, "data_Aprime": seed_b, "G_z": g_seed, "grid_z": grid_seed,
                  "untrained_init": untrained_seed, "heldout_base": HELDOUT_BASE},
        "settings": {"n": n, "quick": quick, "w_avg_samples": cfg["w_avg_samples"], "noise_mode": "const",
                     "truncation_psi": 1.0, "generator": "default", "generator_config": G.config},
        "seconds": seconds,
    }
    atomic_write_text(out / "quality_report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "quality_report.md", markdown_report(report))
    return report


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--n", type=int_at_least(2), default=None, help=f"images per FD set (default {FULL['n']}, --quick {QUICK['n']})")
    ap.add_argument("--quick", action="store_true", help="tiny settings for tests")
    ap.add_argument("--seed-a", type=int, default=101, help="DCGAN stream of set A")
    ap.add_argument("--seed-b", type=int, default=202, help="DCGAN stream of set A'")
    ap.add_argument("--g-seed", type=int, default=0, help="z stream of the G samples (trained and untrained)")
    ap.add_argument("--untrained-seed", type=int, default=0, help="torch seed of the untrained G's init")
    return ap.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    n = args.n if args.n is not None else (QUICK if args.quick else FULL)["n"]
    report = run_quality_report(Path(args.out), n, args.quick, args.seed_a, args.seed_b, args.g_seed,
                                untrained_seed=args.untrained_seed)
    print(markdown_report(report))
    return report


if __name__ == "__main__":
    main()
