"""Space comparison ("Revisiting Latent Space of GAN Inversion", Table 1): invert a target set into every
latent space and compare the reconstructions.

Writes into OUT, besides the shared inversions (`experiments.studies.inversions`: code files, per-image
rows, settings):
  space_comparison.csv            mean and std per space: mse, psnr, ssim, ms_ssim, perceptual, identity, seconds
  space_comparison.md             the same as a Markdown table
  reconstructions.png             targets (top row) and each space's reconstruction below
  reconstructions.json            the rows of that grid, by name
The run holds OUT's lock throughout (`experiments.runs.hold_out_dir`): a second run into the same OUT
is refused. An interrupted run resumes: chunks whose rows are in the per-image CSV, and whose code
files are the ones those rows recorded, are not redone (`inversions.missing_chunks`). A rerun with
other settings or other targets into the same OUT is refused (`experiments.runs.claim_out_dir`).
The table counts each (space, target) once.
"""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

import torch

from latentspaces.interfaces import CodeInitializer, IdentitySimilarity, PerceptualDistance
from latentspaces.images import to_uint8
from latentspaces.metrics.identity_calibration import IdentityCalibration
from latentspaces.spaces import SPACE_ORDER, PNStats, f_size_note, is_f_space, read_code_file
from latentspaces.spaces.f import default_f_layer
from latentspaces.storage import atomic_write_text
from optimizers import PAPER, RECIPES, InversionRecipe

from ..argtypes import positive_int, space_list
from ..argtypes import seed as seed_flag
from ..config import Config, option

from ..distributed import World
from ..figures import labelled_grid, tile_caption
from ..rows import read_rows
from ..runs import hold_out_dir
from ..summaries import mean_std_rows, write_mean_std_table
from .calibration import CALIBRATED_COLUMNS, CALIBRATED_FIELDS, calibrated_fields, folder_calibration
from .inversions import PER_IMAGE, PER_IMAGE_CSV, chunk_path, invert_into, recipe_line, study_models
from .presets import PN_SAMPLES, TARGETS

SUMMARY_METRICS = ["mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "seconds"]
TABLE_COLUMNS = [("MSE", "mse", ".4f", True), ("PSNR", "psnr", ".2f", True), ("SSIM", "ssim", ".3f", True),
                 ("MS-SSIM", "ms_ssim", ".3f", True), ("perceptual", "perceptual", ".3f", True),
                 ("identity", "identity", ".3f", True), ("s / image", "seconds_per_image", ".2f", False)]


@dataclass(frozen=True)
class CompareConfig(Config):
    """`latentspaces compare` and `run_space_comparison`: invert the targets into each space.

    The default is the `paper` preset; `CompareConfig.PRESETS[name]` holds each recipe's (`studies.presets`)."""

    n_targets: int = option(TARGETS["paper"], "number of held-out targets", type=positive_int, names=("--n",))
    recipe: InversionRecipe = PAPER         # steps, lr, loss weights and start (optimizers.recipes)
    pn_samples: int = PN_SAMPLES["paper"]   # W samples the P_N statistics are fitted on
    chunk: int = option(8, "images inverted together, results saved per chunk (16 ran 1.07x faster under --workers "
                           "2 on a 2-core CPU, BENCHMARKS.md)", type=positive_int)
    seed: int = option(0, "the start of --init random, 0 .. 2^32 - 1 (nothing else is random)", type=seed_flag)
    spaces: Tuple[str, ...] = option(tuple(SPACE_ORDER), "comma-separated space names", type=space_list)


CompareConfig.PRESETS = {name: CompareConfig(n_targets=TARGETS[name], recipe=recipe, pn_samples=PN_SAMPLES[name])
                         for name, recipe in RECIPES.items()}


def run_space_comparison(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                             # [N, 3, R, R] in [-1, 1]
    config: Optional[CompareConfig] = None,            # None: CompareConfig(), the paper preset
    perceptual: Optional[PerceptualDistance] = None,   # used in the loss and reported; None: the recipe's, by name
    identity: Optional[IdentitySimilarity] = None,     # reported
    pn_stats: Optional[PNStats] = None,                # P_N's statistics (spaces that use them)
    encoders: Optional[Mapping[str, CodeInitializer]] = None,  # space name -> start (None: the recipe's defaults)
    compile: bool = False,                             # torch.compile the inversion steps (HybridInverter)
) -> List[dict]:
    """Invert `targets` into each space of `config` with its recipe (resumable per chunk); returns the summary rows.

    The models the recipe names are made when not given (`study_models`): a call from Python with a
    config runs what `latentspaces compare` with the same flags runs. Under `torchrun` the chunks are
    sharded over the ranks, and rank 0 writes the table and the grid (the other ranks return no rows).
    """
    c = config or CompareConfig()
    world = World.current()
    perceptual, encoders = study_models(G, c.recipe, c.spaces, perceptual, encoders)
    with hold_out_dir(out):
        invert_into(out, G, targets, c.spaces, c.recipe, perceptual, identity, pn_stats, encoders, c.chunk, c.seed,
                    compile=compile)
        if not world.main:
            return []
        summary = summarize(out, c.spaces, targets.shape[0], folder_calibration(out, identity, targets),
                            f_note=f_size_line(G, c.spaces), recipe_note=recipe_line(c.recipe, perceptual))
        reconstruction_grid(out, targets, c.spaces)
    return summary


def f_size_line(G, spaces: Sequence[str]) -> str:
    """One line naming the F spaces' base-code size and its share of the image ('' without F spaces); it
    adds that such an f can copy the image when it holds as many numbers as the image or more."""
    names = [name for name in spaces if is_f_space(name)]
    if not names:
        return ""
    layer = default_f_layer(G)
    c, h, w = G.synthesis.feature_shape(layer)
    line = f"F size ({', '.join(names)}): {f_size_note(G, layer)} (BDInvert's at 1024 px: 4.2%)."
    if c * h * w >= G.img_channels * G.resolution ** 2:
        line += (" An f this large can hold the image itself: F spaces reconstruct nearly anything here and "
                 "their edits, which move only the detail codes, change the image less than at 1024 px.")
    return line


def summarize(out: Path, spaces: Sequence[str], n_targets: Optional[int] = None,
              calibration: Optional[IdentityCalibration] = None, f_note: str = "",
              recipe_note: str = "") -> List[dict]:
    """Mean and std per space over the first `n_targets` targets (all when None) -> CSV, Markdown, rows.

    With an identity `calibration` (`studies.calibration`), the table adds the calibrated identity and
    the share of images verified as the target's face, and states the baseline under the table.
    `recipe_note` (`inversions.recipe_line`: the recipe the codes were made with) and `f_note`
    (`f_size_line`) follow the table.
    """
    rows = read_rows(out / PER_IMAGE_CSV, PER_IMAGE)
    if n_targets is not None:
        rows = [r for r in rows if int(r["target"]) < n_targets]
    metrics, columns, note = list(SUMMARY_METRICS), list(TABLE_COLUMNS), ""
    if calibration is not None:
        rows = [{**r, **calibrated_fields(float(r["identity"]), calibration)} for r in rows]
        metrics += list(CALIBRATED_FIELDS)
        columns[-1:-1] = CALIBRATED_COLUMNS
        note = calibration.describe()
    note = "\n\n".join(part for part in (recipe_note, note, f_note) if part)
    summary = mean_std_rows(rows, "space", spaces, metrics)
    write_mean_std_table(out, "space_comparison", summary, "space", columns, note)
    return summary


def reconstruction_grid(out: Path, targets: torch.Tensor, spaces: Sequence[str], max_cols: int = 8) -> None:
    """reconstructions.png: the first `max_cols` targets [N, 3, R, R] and below them each space's first chunk,
    rows labelled with the space, columns with the target index, each reconstruction with its MSE and
    identity (when scored)."""
    k = min(max_cols, targets.shape[0])
    scores = {(r["space"], int(r["target"])): r for r in read_rows(out / PER_IMAGE_CSV, PER_IMAGE)}
    rows, names, captions = [to_uint8(targets[:k])], ["targets"], [None]
    for name in spaces:
        path = chunk_path(out, name, 0)
        if path.is_file():
            images = read_code_file(path).images[:k]
            if images.shape[0] == k:
                rows.append(images)
                names.append(name)
                captions.append([tile_caption(scores.get((name, i))) for i in range(k)])
    labelled_grid(out / "reconstructions.png", rows, names, [f"target {i}" for i in range(k)], captions,
                  title="Reconstructions of the first targets per space (MSE, identity to the target)")
    atomic_write_text(out / "reconstructions.json", json.dumps({"rows": names}))


__all__ = ["CompareConfig", "SUMMARY_METRICS", "f_size_line", "reconstruction_grid", "run_space_comparison", "summarize"]
