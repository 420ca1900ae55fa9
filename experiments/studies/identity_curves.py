"""Identity-vs-step curves ("Revisiting Latent Space of GAN Inversion", Fig. 6) and its random-direction
robustness grid (Fig. 3).

Each inverted target is edited along GANSpace directions with alpha in linspace(-2, 2, 11): Z-type
spaces along the Z counterparts (Eq. 6), W-type spaces along the W axes, both scaled by the axis'
standard deviation so that alpha is in the same units (std of the PCA coordinate) for every space.
Edits touch only the detail codes in F spaces. The identity similarity between the edited image
and the target is recorded per (space, target, direction, alpha), with the edit's size: the mean
absolute pixel change from the unedited inversion (`edit_change`). The same alpha moves the image by
different amounts in different spaces (an F/Z+ edit touches only the detail codes above F, and a Z
step is a different size than a W step), so compare identities at a matched edit size too.

Writes into OUT: identity_curves.csv (rewritten after each space and direction; resumable; one row
per (space, target, direction, alpha), with the fingerprint of the code file the edit started from),
identity_curves.png / .pdf (light line per target x direction, bold mean per space),
identity_summary.csv (mean identity at each |alpha| per space), random_directions.png.
`experiments.studies.paired_statistics` tests the differences between spaces edit by edit.
Inversions are shared with a space comparison in the same OUT (`experiments.studies.inversions`): made
once, chunk by chunk, by whichever command runs first, and refused when the settings differ. The run
holds OUT's lock throughout. Codes are read only when their file is the one their per-image rows
recorded (a missing or replaced chunk is redone first), and curve rows computed from a code file that
has since been redone are dropped and recomputed.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from latentspaces.directions import Direction, ganspace, load_directions, random_directions, save_directions
from latentspaces.interfaces import CodeInitializer, IdentitySimilarity, PerceptualDistance
from latentspaces.images import to_uint8
from latentspaces.metrics.identity_calibration import IdentityCalibration
from latentspaces.progress import progress_bar
from latentspaces.spaces import Code, PNStats, build_space
from latentspaces.storage import save_figure
from optimizers import RECIPES

from ..argtypes import non_negative_int, space_list
from ..argtypes import seed as seed_flag
from ..config import option

from ..distributed import World
from ..figures import labelled_grid
from ..rows import RowSchema, RunFolderWarning, read_rows, write_rows, write_summary
from ..runs import hold_out_dir
from .calibration import folder_calibration
from .matched_edits import (MATCHED, MATCHED_CSV, edit_with_alphas, matched_edit_rows, matched_summary,
                            paired_columns, pixel_change, edit_sizes_option)
from .matched_edits import FIELDS as MATCHED_FIELDS
from .inversions import (PER_IMAGE, PER_IMAGE_CSV, chunk_checksums, chunk_space_options, invert_into, load_codes,
                         study_models)
from .presets import DIRECTION_SAMPLES, DIRECTIONS, PN_SAMPLES, TARGETS
from .space_comparison import CompareConfig

CURVE_SPACES = ("ZPlus", "WPlus", "FZPlus", "FWPlus", "FWPlusPN")   # F/W+(P_N): the paper's own F/W+ baseline
CURVE_ALPHAS = tuple(torch.linspace(-2, 2, 11).tolist())   # Fig. 6's edit strengths (float32 steps, as recorded)
CURVES_CSV = "identity_curves.csv"
FIELDS = ["space", "target", "direction", "alpha", "identity", "edit_change", "codes_sha256"]
# edit_change is optional: rows written before it existed read '' (no edit size in the summary), never refused.
CURVES = RowSchema(tuple(FIELDS), key=("space", "target", "direction", "alpha"), ints=("target",),
                   floats=("alpha", "identity"))


def edit_directions(G: torch.nn.Module, out: Path, n_directions: int, n_samples: int,
                    seed: int = 0) -> Dict[str, List[Direction]]:
    """GANSpace directions of both kinds ('z': [z_dim] vectors, 'w': [w_dim]), scaled by the std of their
    PCA coordinate, cached in OUT as directions_ganspace_{kind}.safetensors."""
    dirs = {}
    for kind in ("z", "w"):
        path = out / f"directions_ganspace_{kind}.safetensors"
        if path.is_file():
            dirs[kind] = load_directions(path)[:n_directions]
            continue
        found = ganspace(G, n_samples=n_samples, n_components=n_directions, seed=seed, kind=kind, scale_by_std=True)
        save_directions(path, found)
        dirs[kind] = found
    return dirs


@dataclass(frozen=True)
class IdentityCurvesConfig(CompareConfig):
    """`latentspaces identity-curves` and `run_identity_curves`: the inversions of `compare` (the same fields make
    the same files), then edits along GANSpace directions. The default is the `paper` preset."""

    seed: int = option(0, "the start of --init random and the GANSpace samples, 0 .. 2^32 - 1", type=seed_flag)
    spaces: Tuple[str, ...] = option(tuple(CURVE_SPACES), "comma-separated space names", type=space_list)
    directions: int = DIRECTIONS["paper"]                  # GANSpace directions per kind
    direction_samples: int = DIRECTION_SAMPLES["paper"]    # W samples of the GANSpace PCA
    alphas: Tuple[float, ...] = CURVE_ALPHAS               # edit strengths, in std of the PCA coordinate
    index: Optional[int] = option(None, "target shown in random_directions.png", type=non_negative_int,
                                  default_text="the one closest to the set's median brightness and reconstruction "
                                               "error")
    edit_sizes: Tuple[float, ...] = edit_sizes_option()


IdentityCurvesConfig.PRESETS = {
    name: IdentityCurvesConfig(n_targets=TARGETS[name], recipe=recipe, pn_samples=PN_SAMPLES[name],
                               directions=DIRECTIONS[name], direction_samples=DIRECTION_SAMPLES[name])
    for name, recipe in RECIPES.items()}


def run_identity_curves(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                     # [N, 3, R, R] in [-1, 1]
    identity: IdentitySimilarity,              # (images, targets) -> [N] similarity in [-1, 1]
    config: Optional[IdentityCurvesConfig] = None,     # None: IdentityCurvesConfig(), the paper preset
    perceptual: Optional[PerceptualDistance] = None,   # None: the recipe's, by name
    encoders: Optional[Mapping[str, CodeInitializer]] = None,  # None: the recipe's defaults
    pn_stats: Optional[PNStats] = None,
    compile: bool = False,                     # torch.compile the inversion steps (HybridInverter)
) -> List[dict]:
    """Edit every target's inversion along GANSpace directions per space; returns the summary rows.

    Inversions missing from OUT are made first, chunk by chunk, exactly as `compare` makes them (same
    files, same resume), so `compare` and `identity-curves` into one OUT invert each image once.
    Under `torchrun` the inversions and then the (space, direction) edit jobs are sharded over the
    ranks; rank 0 writes every file (the other ranks return no rows).
    """
    c = config or IdentityCurvesConfig()
    spaces, alphas, chunk, seed, edit_sizes = c.spaces, c.alphas, c.chunk, c.seed, c.edit_sizes
    world = World.current()
    perceptual, encoders = study_models(G, c.recipe, spaces, perceptual, encoders)
    with hold_out_dir(out):
        invert_into(out, G, targets, spaces, c.recipe, perceptual, identity, pn_stats, encoders, chunk, seed,
                    compile=compile)
        n = targets.shape[0]
        rows, sums = world.from_main(lambda: _current_rows(out, n, chunk))
        # A (space, direction) is done when all its rows for these targets are there (an earlier run may have had
        # fewer) and record the edit size (rows older than edit_change are redone: edits only, codes are kept).
        counts = Counter((r["space"], r["direction"]) for r in rows if int(r["target"]) < n and r["edit_change"])
        done = {key for key, c in counts.items() if c >= n * len(alphas)}
        dirs = world.main_first(lambda: edit_directions(G, out, c.directions, c.direction_samples, seed))
        built = {name: build_space(name, G, pn_stats, **c.recipe.space_options(name)) for name in spaces}
        jobs = [(name, d) for name in spaces for d in dirs[built[name].kind] if (name, d.name) not in done]
        cache: Dict[str, Tuple[Code, torch.Tensor]] = {}

        def inverted(name: str) -> Tuple[Code, torch.Tensor]:
            """(codes, G(codes)) of one space: what an edit starts from and its pixel change is measured from."""
            if name not in cache:
                code = load_codes(out, name, n, built[name].device, _of_space(sums, name))
                with torch.no_grad():
                    cache[name] = (code, built[name].synthesize(code))
            return cache[name]

        def curve_rows(name: str, d: Direction) -> List[dict]:
            space, (code, unedited) = built[name], inverted(name)
            new = []
            for alpha in alphas:
                with torch.no_grad():
                    img = space.synthesize(space.edit(code, d, alpha))
                sims = identity(img, targets)
                change = pixel_change(img, unedited)
                new += [{"space": name, "target": i, "direction": d.name, "alpha": f"{alpha:.2f}",
                         "identity": f"{float(s):.6g}", "edit_change": f"{float(c):.6g}",
                         "codes_sha256": sums[(name, i // chunk * chunk)]}
                        for i, (s, c) in enumerate(zip(sims, change))]
            return new

        def matched_rows(name: str, d: Direction) -> List[dict]:
            space, (code, unedited) = built[name], inverted(name)
            new = []
            for start in range(0, n, chunk):   # one chunk of images at a time: the search renders each many times
                part = slice(start, start + chunk)
                mine = code.select(part)
                found = matched_edit_rows(lambda a: edit_with_alphas(space, mine, d, a), unedited[part],
                                          targets[part], identity, edit_sizes)
                new += [{"space": name, "target": start + r["target"], "direction": d.name, "sign": r["sign"],
                         "size": f"{r['size']:g}", "alpha": f"{r['alpha']:.6g}", "edit_change": f"{r['edit_change']:.6g}",
                         "identity": f"{r['identity']:.6g}", "codes_sha256": sums[(name, start)]} for r in found]
            return new

        rows = _run_jobs(out / CURVES_CSV, FIELDS, rows, jobs, curve_rows, "identity curves")
        matched: List[dict] = []
        if edit_sizes:
            matched = world.from_main(lambda: _current_matched(out, n, chunk, sums))
            wanted_sizes = {f"{size:g}" for size in edit_sizes}
            per_job = Counter((r["space"], r["direction"]) for r in matched
                              if int(r["target"]) < n and f"{float(r['size']):g}" in wanted_sizes)
            wanted = n * 2 * len(edit_sizes)
            jobs = [(name, d) for name in spaces for d in dirs[built[name].kind]
                    if per_job.get((name, d.name), 0) < wanted]
            matched = _run_jobs(out / MATCHED_CSV, MATCHED_FIELDS, matched, jobs, matched_rows, "matched edit sizes")
        if not world.main:
            return []
        rows = [r for r in rows if int(r["target"]) < n]
        matched = [r for r in matched if int(r["target"]) < n]
        summary = summarize(out, rows, spaces, folder_calibration(out, identity, targets), matched)
        plot_curves(out, rows, spaces)
        random_direction_grid(out, G, targets, spaces, seed, pn_stats, identity, checksums=sums, index=c.index)
    return summary


def _run_jobs(path: Path, fields: Sequence[str], rows: List[dict], jobs: Sequence[Tuple[str, Direction]],
              compute, desc: str) -> List[dict]:
    """Run the (space, direction) jobs, one per rank per round; rank 0 gathers each round's rows, replaces
    the rows of the jobs done and rewrites the CSV (the resume point). Returns the rows (rank 0's)."""
    world = World.current()
    bar = progress_bar(total=len(jobs), desc=desc, unit="direction", disable=not world.main or not jobs)
    for first in range(0, len(jobs), world.size):
        mine = jobs[first + world.rank] if first + world.rank < len(jobs) else None
        new = compute(*mine) if mine is not None else []
        gathered = world.gather(new)
        if world.main:
            finished = {(r["space"], r["direction"]) for part in gathered for r in part}
            rows = [r for r in rows if (r["space"], r["direction"]) not in finished] + [r for p in gathered for r in p]
            write_rows(path, rows, fields)
        bar.update(sum(1 for p in gathered if p))
    bar.close()
    return rows


def _current_matched(out: Path, n: int, chunk: int, sums: Mapping[Tuple[str, int], str]) -> List[dict]:
    """The matched-size rows still valid: rows of the first `n` targets whose code file has been redone
    since are dropped (their jobs are then redone)."""
    valid, stale = [], []
    for r in read_rows(out / MATCHED_CSV, MATCHED):
        target = int(r["target"])
        ok = target >= n or r["codes_sha256"] == sums.get((r["space"], target // chunk * chunk))
        (valid if ok else stale).append(r)
    if stale:
        warnings.warn(f"{out / MATCHED_CSV}: {len(stale)} rows were computed from code files since redone: "
                      "recomputing them", RunFolderWarning, stacklevel=2)
    return valid


def _current_rows(out: Path, n: int, chunk: int) -> Tuple[List[dict], Dict[Tuple[str, int], str]]:
    """(the curve rows still valid, the chunk fingerprints): rows of the first `n` targets whose code file
    has been redone since they were computed are dropped (rows older than fingerprints are kept)."""
    sums = chunk_checksums(out, chunk)
    rows = read_rows(out / CURVES_CSV, CURVES)
    valid, stale = [], []
    for r in rows:
        target = int(r["target"])
        ok = target >= n or r["codes_sha256"] in ("", sums.get((r["space"], target // chunk * chunk)))
        (valid if ok else stale).append(r)
    if stale:
        warnings.warn(f"{out / CURVES_CSV}: {len(stale)} rows were computed from code files since redone "
                      f"({', '.join(sorted({r['space'] for r in stale}))}): recomputing them", RunFolderWarning, stacklevel=2)
    return valid, sums


def _of_space(sums: Mapping[Tuple[str, int], str], name: str) -> Dict[int, str]:
    """chunk start -> fingerprint, of one space's chunks (for `load_codes`)."""
    return {start: sha for (space, start), sha in sums.items() if space == name}


def summarize(out: Path, rows: List[dict], spaces: Sequence[str],
              calibration: Optional[IdentityCalibration] = None, matched: Sequence[dict] = ()) -> List[dict]:
    """Per space: the mean identity at each |alpha| and over all alphas, and the mean edit change (pixel
    change from the unedited inversion) at each |alpha| > 0 -> identity_summary.csv, rows.

    With an identity `calibration` (`studies.calibration`), also the calibrated identity
    (identity_calibrated_at_{a}, identity_calibrated_mean) and the share verified as the target's face
    (verified_at_{a}). With `matched` rows (`matched_edits`), per edit size s: the mean identity of the
    edits that reached it (identity_at_size_{s}, calibrated and verified too), the share that reached
    it (reached_at_size_{s}) and the mean |alpha| it took (alpha_at_size_{s}); and, paired per edit against
    F/Z+ (or the first space with matched rows), the mean identity difference, the share of edits won and
    the Wilcoxon p (identity_minus_FZPlus_at_size_{s}, wins_vs_FZPlus_at_size_{s}, p_vs_FZPlus_at_size_{s}).
    """
    summary = []
    present = [name for name in spaces if any(r["space"] == name for r in matched)]
    reference = "FZPlus" if "FZPlus" in present else (present[0] if present else "")
    versus = paired_columns(matched, present, reference) if reference else {}
    for name in spaces:
        mine = [r for r in rows if r["space"] == name]
        if not mine:
            continue
        by_abs: Dict[float, List[float]] = {}
        for r in mine:
            by_abs.setdefault(round(abs(float(r["alpha"])), 2), []).append(float(r["identity"]))
        change: Dict[float, List[float]] = {}
        for r in mine:
            if r["edit_change"]:
                change.setdefault(round(abs(float(r["alpha"])), 2), []).append(float(r["edit_change"]))
        row = {"space": name, **{f"identity_at_{a:g}": sum(v) / len(v) for a, v in sorted(by_abs.items())},
               "identity_mean": sum(float(r["identity"]) for r in mine) / len(mine),
               **{f"edit_change_at_{a:g}": sum(v) / len(v) for a, v in sorted(change.items()) if a > 0}}
        if calibration is not None:
            for a, v in sorted(by_abs.items()):
                row[f"identity_calibrated_at_{a:g}"] = float(calibration.calibrate(sum(v) / len(v)))
                row[f"verified_at_{a:g}"] = sum(bool(calibration.verified(s)) for s in v) / len(v)
            row["identity_calibrated_mean"] = float(calibration.calibrate(row["identity_mean"]))
        for size, got in matched_summary([r for r in matched if r["space"] == name]).items():
            values = got["identity"]
            mean = sum(values) / len(values) if values else math.nan
            row[f"identity_at_size_{size:g}"] = mean
            if calibration is not None:
                row[f"identity_calibrated_at_size_{size:g}"] = float(calibration.calibrate(mean))
                row[f"verified_at_size_{size:g}"] = (sum(bool(calibration.verified(v)) for v in values) / len(values)
                                                     if values else math.nan)
            row[f"reached_at_size_{size:g}"] = got["reached"]
            row[f"alpha_at_size_{size:g}"] = got["alpha"]
        row.update(versus.get(name, {}))
        if calibration is not None:
            row["impostor_baseline"] = calibration.impostor
        summary.append(row)
    write_summary(out / "identity_summary.csv", summary, "space")
    return summary


def plot_curves(out: Path, rows: List[dict], spaces: Sequence[str]) -> None:
    """identity_curves.png / .pdf: identity vs alpha, a light line per (target, direction), the mean per space bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patheffects

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, name in enumerate(spaces):
        mine = [r for r in rows if r["space"] == name]
        if not mine:
            continue
        color = colors[ci % len(colors)]
        lines: Dict[tuple, Dict[float, float]] = {}
        for r in mine:
            lines.setdefault((r["target"], r["direction"]), {})[float(r["alpha"])] = float(r["identity"])
        for curve in lines.values():
            xs = sorted(curve)
            ax.plot(xs, [curve[x] for x in xs], color=color, alpha=0.12, linewidth=0.8, zorder=1)
        xs = sorted({float(r["alpha"]) for r in mine})
        mean = [sum(float(r["identity"]) for r in mine if float(r["alpha"]) == x) /
                max(1, sum(1 for r in mine if float(r["alpha"]) == x)) for x in xs]
        # Means above every space's light lines, with a white edge, so no space's cloud hides another's mean.
        ax.plot(xs, mean, color=color, linewidth=2.5, label=name, zorder=3,
                path_effects=[patheffects.Stroke(linewidth=4.5, foreground="white"), patheffects.Normal()])
    ax.set_xlabel("edit step alpha (std of the GANSpace coordinate)")
    ax.set_ylabel("identity similarity to the target (cosine)")
    ax.set_title("Identity vs edit step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out / "identity_curves.png", dpi=150)
    save_figure(fig, out / "identity_curves.pdf")
    plt.close(fig)


def representative_target(targets: torch.Tensor, recon_rows: Sequence[dict]) -> Tuple[int, str]:
    """(index, why) of the target closest to the set's median in brightness and in reconstruction error.

    targets [N, 3, R, R]; recon_rows: per-image comparison rows (their MSE, averaged over spaces; without
    rows for every target, brightness alone decides). Target 0 of the held-out set is nearly black, and
    every edit of a dark face looks alike: the figure shows a typical face instead.
    """
    n = targets.shape[0]
    brightness = targets.float().mean(dim=(1, 2, 3))
    errors: Dict[int, List[float]] = {}
    for r in recon_rows:
        if int(r["target"]) < n:
            errors.setdefault(int(r["target"]), []).append(float(r["mse"]))

    def rank(values: torch.Tensor) -> torch.Tensor:  # 0 .. 1
        return torch.argsort(torch.argsort(values)).double() / max(n - 1, 1)

    score = (rank(brightness) - 0.5).abs()
    why = f"median brightness of the {n} targets"
    if len(errors) == n:
        score = score + (rank(torch.tensor([sum(errors[i]) / len(errors[i]) for i in range(n)])) - 0.5).abs()
        why = f"median brightness and reconstruction error of the {n} targets"
    return int(torch.argmin(score)), why


def random_direction_grid(out: Path, G: torch.nn.Module, targets: torch.Tensor, spaces: Sequence[str], seed: int = 0,
                          pn_stats: Optional[PNStats] = None, identity: Optional[IdentitySimilarity] = None,
                          alphas: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
                          checksums: Optional[Mapping[Tuple[str, int], str]] = None,
                          index: Optional[int] = None) -> int:
    """Fig. 3: one target; per space a row of edits along one random direction n ~ N(0, 0.04 I).

    targets [N, 3, R, R]: the run's targets; `index` picks one (default `representative_target`, and the
    title says why). The target is the first column; columns are labelled with alpha, rows with the
    space, and each edit with its identity similarity to the target when `identity` is given.
    checksums: (space, start) -> code-file fingerprint (`inversions.chunk_checksums`), to read only the
    files the rows recorded. Returns the index shown.
    """
    if index is None:
        index, why = representative_target(targets, read_rows(out / PER_IMAGE_CSV, PER_IMAGE))
    else:
        why = "chosen with --index"
    if not 0 <= index < targets.shape[0]:
        raise ValueError(f"target index {index} is outside the {targets.shape[0]} targets")
    target = targets[index:index + 1]
    rows, captions = [], []
    for name in spaces:
        space = build_space(name, G, pn_stats, **chunk_space_options(out, name))
        sums = None if checksums is None else _of_space(checksums, name)
        code = load_codes(out, name, index + 1, space.device, sums).select(slice(index, index + 1))
        (d,) = random_directions(1, code[space.edit_field].shape[-1], kind=space.kind, seed=seed)
        with torch.no_grad():
            edited = torch.cat([space.synthesize(space.edit(code, d, a)) for a in alphas])
        sims = identity(edited, target.expand_as(edited).to(edited.device)).tolist() if identity else None
        rows.append(torch.cat([to_uint8(target), to_uint8(edited)]))
        captions.append([""] + ([f"id {v:.3f}" for v in sims] if sims else [""] * len(alphas)))
    labelled_grid(out / "random_directions.png", rows, list(spaces), ["target"] + [f"alpha {a:g}" for a in alphas],
                  captions, title=f"Edits of target {index} ({why})\nalong a random direction n ~ N(0, 0.04 I) "
                                  f"(seed {seed})")
    return index

