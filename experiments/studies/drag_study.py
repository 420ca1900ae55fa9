"""The drag study: DragGAN's face landmark manipulation ("Drag Your GAN", Table 1) in each latent space.

For each pair of faces (i, j), dlib's 68 landmarks are found on both (`FaceAligner.aligned_landmarks`); face
i's landmarks are dragged to face j's (`latentspaces.drag`), with 1 (the nose tip), 5 (the outer eye corners,
the nose tip and the mouth corners) or all 68 points, in every space, from face i's code in that space. Per
(source, pair, points, space) a row records:

- md: the mean distance, px of the R x R image, between the dragged landmarks as dlib finds them on the
  result and their targets (DragGAN's MD); md_start: the same before the drag (what the drag had to do);
  landmarks that dlib places outside the image (the jaw, by a pixel or two) are clamped to its edge;
- identity: the calibrated identity similarity (0 another person of the set, 1 the same image) of the result
  to the start image: who the face stays;
- outside: the mean absolute pixel change (images in [-1, 1]) outside the start face's region (the paste-back's
  face polygon: the hull of the jaw line, the eyebrows and the eyebrows raised by half the eye-to-mouth
  distance): what else moved;
- steps, reached (every tracked handle within the tolerance), seconds.

Two sources of faces: generator samples (z of seeds 2i and 2i+1, no truncation, so that Z-type spaces hold
the same image: each space's start is its code of that z) and held-out faces inverted into each space (the
quick recipe; the targets are face j's landmarks on the real face). W+ with DragGAN's defaults is the
reference row: the paired statistics (Wilcoxon, per pair) compare each space with it.

Writes into OUT: drag_study.csv (one row per drag, appended as each finishes: a killed run resumes),
drag_study_summary.csv / .md (means per source, points and space), drag_study_paired.csv (each space
against W+), drag_study.png / .pdf (MD against identity per space, one panel per point count) and
drag_study_settings.json (a rerun with other settings into OUT is refused). The run holds OUT's lock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from latentspaces.align import FaceAligner
from latentspaces.align.paste import landmark_polygon
from latentspaces.drag import DragSettings, drag
from latentspaces.fingerprints import generator_fingerprint
from latentspaces.interfaces import IdentitySimilarity
from latentspaces.progress import progress_bar
from latentspaces.spaces import Code, LatentSpace, build_space
from latentspaces.storage import atomic_write_text, save_figure
from optimizers import QUICK, HybridInverter

from ..argtypes import int_in, name_list, positive_int, space_list
from ..argtypes import seed as seed_flag
from ..config import Config, option
from ..rows import RowSchema, append_rows, read_rows, write_rows
from ..runs import claim_out_dir, hold_out_dir
from ..summaries import paired_test
from .calibration import folder_calibration

ROWS_CSV, SUMMARY_CSV, PAIRED_CSV = "drag_study.csv", "drag_study_summary.csv", "drag_study_paired.csv"
SETTINGS_FILE = "drag_study_settings.json"
SOURCES = ("samples", "inverted")
REFERENCE = "WPlus"
FACE_FOREHEAD = 0.5   # the face region reaches this many eye-to-mouth distances above the eyebrows
# dlib's 68-point indices: the nose tip alone; the outer eye corners, the nose tip and the mouth corners
POINT_SETS: Dict[int, Tuple[int, ...]] = {1: (30,), 5: (36, 45, 30, 48, 54), 68: tuple(range(68))}
FIELDS = ["source", "pair", "points", "space", "md", "md_start", "identity", "identity_calibrated", "outside",
          "steps", "reached", "seconds"]
ROWS = RowSchema(tuple(FIELDS), key=("source", "pair", "points", "space"), ints=("pair", "points", "steps", "reached"),
                 finite=("md", "md_start", "outside", "seconds"))


def point_counts(text: str) -> Tuple[int, ...]:
    """argparse type: comma-separated landmark counts of POINT_SETS ('1,5'), in increasing order."""
    return tuple(sorted(int(p) for p in name_list(tuple(map(str, POINT_SETS)), "landmark count")(text)))


@dataclass(frozen=True)
class DragStudyConfig(Config):
    """`latentspaces drag-study` and `run_drag_study`: quick (--quick: minutes on 2 CPU cores), full and paper
    (DragGAN's Table 1 scale is 16 pairs here; the paper's own is larger)."""

    pairs: int = option(16, "pairs of faces per source", type=positive_int)
    points: Tuple[int, ...] = option((1, 5, 68), "landmark counts dragged, comma-separated from 1, 5, 68",
                                     type=point_counts)
    spaces: Tuple[str, ...] = option(("WPlus", "W", "ZPlus", "S", "FWPlus", "FZPlus"), "spaces", type=space_list)
    sources: Tuple[str, ...] = option(SOURCES, "generator samples and/or inverted held-out faces, comma-separated",
                                      type=name_list(SOURCES, "source"))
    max_steps: int = option(300, "Adam steps at most per drag", type=int_in(1, 10_000))
    invert_steps: int = option(QUICK.steps, "steps of the quick recipe that inverts the held-out faces",
                               type=int_in(0, 10_000))
    seed: int = option(0, "the samples' z are seeds 2 pair + seed and 2 pair + seed + 1", type=seed_flag)


DragStudyConfig.PRESETS = {"quick": DragStudyConfig(pairs=2, max_steps=100), "full": DragStudyConfig(),
                           "paper": DragStudyConfig()}


def check_config(c: DragStudyConfig) -> None:
    """ValueError for point counts or sources the study does not know."""
    bad = [p for p in c.points if p not in POINT_SETS]
    if bad or not c.points:
        raise ValueError(f"points {bad or '(none)'}: the study drags {', '.join(map(str, POINT_SETS))} landmarks")
    unknown = [s for s in c.sources if s not in SOURCES]
    if unknown or not c.sources:
        raise ValueError(f"sources {unknown or '(none)'}: choose from {', '.join(SOURCES)}")


def code_of_z(space: LatentSpace, z: torch.Tensor) -> Code:
    """The space's code of G(z) for z [N, z_dim]: Z-type spaces hold z itself, the others the ws of z."""
    if hasattr(space, "from_z"):
        return space.from_z(z)
    w = space.G.mapping(z)
    return space.from_ws(w if space.ws_layout == "shared" else space.G.broadcast(w))


def face_region(landmarks: np.ndarray, size: int) -> torch.Tensor:
    """[R, R] bool: the face of 68 landmarks (x, y), the paste-back's face polygon (`landmark_polygon`: the hull of
    the jaw line, the eyebrows and the eyebrows raised by half the eye-to-mouth distance) filled at pixel centres."""
    hull = landmark_polygon(landmarks, forehead=FACE_FOREHEAD)
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p + 0.5) for p in hull], fill=1)
    return torch.from_numpy(np.array(canvas, dtype=bool))


def _starts(source: str, space: LatentSpace, G, c: DragStudyConfig, heldout: Optional[torch.Tensor]) -> Code:
    """The start codes of the study's first faces [pairs] in `space`."""
    if source == "samples":
        z = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(c.seed + 2 * i))
                         for i in range(c.pairs)]).to(space.device)
        return code_of_z(space, z)
    inv = HybridInverter.from_recipe(space, QUICK.replace(steps=c.invert_steps), progress=False)
    return inv.invert(heldout[0::2][: c.pairs]).code


def _second_faces(source: str, G, c: DragStudyConfig, heldout: Optional[torch.Tensor]) -> torch.Tensor:
    """The faces whose landmarks are the targets [pairs, 3, R, R]."""
    if source == "inverted":
        return heldout[1::2][: c.pairs]
    z = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(c.seed + 2 * i + 1))
                     for i in range(c.pairs)]).to(G.w_avg.device)
    with torch.no_grad():
        return G.synthesis(G.broadcast(G.mapping(z)))


def run_drag_study(out: Path, G: torch.nn.Module, heldout: torch.Tensor, identity: Optional[IdentitySimilarity],
                   config: Optional[DragStudyConfig] = None, progress: bool = True) -> List[dict]:
    """Every drag still missing from OUT (module docstring); returns the summary rows. heldout: at least
    2 x pairs held-out faces [N, 3, R, R] in [-1, 1] (face 2i dragged to face 2i + 1's landmarks)."""
    c = config or DragStudyConfig()
    check_config(c)
    if "inverted" in c.sources and heldout.shape[0] < 2 * c.pairs:
        raise ValueError(f"{c.pairs} pairs of inverted faces need {2 * c.pairs} held-out faces, got {heldout.shape[0]}")
    aligner = FaceAligner(size=G.resolution)
    settings = {"generator": generator_fingerprint(G), "pairs": c.pairs, "points": list(c.points),
                "sources": list(c.sources), "max_steps": c.max_steps, "invert_steps": c.invert_steps, "seed": c.seed,
                "drag": {k: v for k, v in vars(DragSettings(max_steps=c.max_steps).resolved(
                    G.resolution, list(G.synthesis.feature_layers))).items()},
                "identity": getattr(identity, "name", "none")}
    with hold_out_dir(out):
        claim_out_dir(out, settings, heldout[: 2 * c.pairs], (ROWS_CSV,), SETTINGS_FILE)
        calibration = folder_calibration(out, identity, heldout)
        done = {tuple(r[k] for k in ROWS.key) for r in read_rows(out / ROWS_CSV, ROWS)} \
            if (out / ROWS_CSV).exists() else set()
        jobs = [(source, name) for source in c.sources for name in c.spaces
                if any((source, str(i), str(p), name) not in done for i in range(c.pairs) for p in c.points)]
        for source, name in progress_bar(jobs, desc="drag study", unit="space", disable=not progress or not jobs):
            space = build_space(name, G)
            targets_lm, _ = aligner.aligned_landmarks(_second_faces(source, G, c, heldout))
            starts = _starts(source, space, G, c, heldout)
            with torch.no_grad():
                start_images = space.synthesize(starts)
            start_lm, _ = aligner.aligned_landmarks(start_images)
            rows = []
            for i in range(c.pairs):
                for p in c.points:
                    if (source, str(i), str(p), name) in done:
                        continue
                    idx = list(POINT_SETS[p])
                    # jaw landmarks can fall a pixel or two outside the image: clamped to its edge
                    handles = start_lm[i][idx].clip(0, G.resolution - 1)
                    goals = targets_lm[i][idx].clip(0, G.resolution - 1)
                    t0 = time.perf_counter()
                    res = drag(space, starts.select(slice(i, i + 1)), handles.tolist(), goals.tolist(),
                               settings=DragSettings(max_steps=c.max_steps))
                    seconds = time.perf_counter() - t0
                    (found,), _ = aligner.aligned_landmarks(res.image)
                    md = float(np.linalg.norm(found[idx] - goals, axis=1).mean())
                    md_start = float(np.linalg.norm(handles - goals, axis=1).mean())
                    outside = ~face_region(start_lm[i], G.resolution)
                    change = (res.image[0] - start_images[i]).abs().mean(0).cpu()
                    sim = float(identity(res.image, start_images[i:i + 1])[0]) if identity is not None else math.nan
                    cal = float(calibration.calibrate(sim)) if calibration is not None and math.isfinite(sim) \
                        else math.nan
                    rows.append({"source": source, "pair": i, "points": p, "space": name, "md": f"{md:.4g}",
                                 "md_start": f"{md_start:.4g}", "identity": f"{sim:.4g}",
                                 "identity_calibrated": f"{cal:.4g}", "outside": f"{float(change[outside].mean()):.4g}",
                                 "steps": res.steps, "reached": int(res.reached), "seconds": f"{seconds:.3g}"})
            append_rows(out / ROWS_CSV, rows, FIELDS)
        rows = [r for r in read_rows(out / ROWS_CSV, ROWS) if int(r["pair"]) < c.pairs]
        summary = summarize(rows, c)
        write_rows(out / SUMMARY_CSV, summary, list(summary[0]) if summary else ["source"])
        atomic_write_text(out / "drag_study_summary.md", summary_markdown(summary) + "\n")
        paired = paired_rows(rows)
        write_rows(out / PAIRED_CSV, paired, list(paired[0]) if paired else ["source"])
        plot(out, summary, c)
    return summary


MEANS = ("md", "md_start", "identity_calibrated", "outside", "steps", "reached", "seconds")


def summarize(rows: List[dict], c: DragStudyConfig) -> List[dict]:
    """Mean (and standard deviation of md and identity) per source, points and space, in the config's order."""
    out = []
    for source in c.sources:
        for p in c.points:
            for name in c.spaces:
                mine = [r for r in rows if (r["source"], r["points"], r["space"]) == (source, str(p), name)]
                if not mine:
                    continue
                row: Dict[str, object] = {"source": source, "points": p, "space": name, "n": len(mine)}
                for k in MEANS:
                    values = np.array([float(r[k]) for r in mine])
                    row[k] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
                for k in ("md", "identity_calibrated"):
                    values = np.array([float(r[k]) for r in mine])
                    row[f"{k}_std"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else math.nan
                out.append(row)
    return out


def summary_markdown(summary: Sequence[dict]) -> str:
    """The summary as a Markdown table."""
    lines = ["| source | points | space | MD (px) | MD at start | identity (cal.) | change outside the face | steps | "
             "reached | s / drag |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in summary:
        lines.append(f"| {r['source']} | {r['points']} | {r['space']} | {r['md']:.2f} ± {r['md_std']:.2f} | "
                     f"{r['md_start']:.2f} | {r['identity_calibrated']:.3f} | {r['outside']:.4f} | {r['steps']:.0f} | "
                     f"{r['reached']:.0%} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def paired_rows(rows: List[dict]) -> List[dict]:
    """Each space against W+ per (source, points), paired by pair: MD (lower better) and identity (higher)."""
    out = []
    groups = sorted({(r["source"], r["points"]) for r in rows})
    for source, points in groups:
        mine = [r for r in rows if (r["source"], r["points"]) == (source, points)]
        ref = {r["pair"]: r for r in mine if r["space"] == REFERENCE}
        for name in dict.fromkeys(r["space"] for r in mine if r["space"] != REFERENCE):
            other = {r["pair"]: r for r in mine if r["space"] == name}
            common = sorted(set(ref) & set(other), key=int)
            for measure, higher in (("md", False), ("identity_calibrated", True)):
                a = np.array([float(other[k][measure]) for k in common])
                b = np.array([float(ref[k][measure]) for k in common])
                if len(common) and np.isfinite(a).all() and np.isfinite(b).all():
                    out.append({"source": source, "points": points, "a": name, "b": REFERENCE, "measure": measure,
                                **{k: (f"{v:.4g}" if isinstance(v, float) else v)
                                   for k, v in paired_test(a, b, higher).items()}})
    return out


def plot(out: Path, summary: Sequence[dict], c: DragStudyConfig) -> None:
    """drag_study.png/.pdf: MD against calibrated identity, one panel per point count, a marker per space and
    source (filled: samples, open: inverted faces)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(c.points), figsize=(4.2 * len(c.points), 3.8), squeeze=False)
    colours = {name: plt.cm.tab10(i) for i, name in enumerate(c.spaces)}
    for ax, p in zip(axes[0], c.points):
        for r in (r for r in summary if r["points"] == p):
            filled = r["source"] == "samples"
            ax.errorbar(r["md"], r["identity_calibrated"], xerr=r["md_std"], yerr=r["identity_calibrated_std"],
                        fmt="o" if filled else "s", color=colours[r["space"]], mfc=colours[r["space"]] if filled
                        else "white", capsize=2, label=f"{r['space']} ({r['source']})")
        ax.set_title(f"{p} landmark{'s' if p > 1 else ''}")
        ax.set_xlabel("MD to the targets after the drag (px, lower is better)")
        ax.set_ylabel("identity kept (calibrated)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    for suffix in ("png", "pdf"):
        save_figure(fig, out / f"drag_study.{suffix}", dpi=150)
    plt.close(fig)


__all__ = ["DragStudyConfig", "POINT_SETS", "code_of_z", "face_region", "run_drag_study", "summarize"]
