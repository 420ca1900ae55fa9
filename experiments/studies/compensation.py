"""Compensation comparison (the setting of "Spatial-Contextual Discrepancy Information Compensation for GAN
Inversion", Table 2): the base W+ encoder, the compensation heads, PTI and HybridInverter F/Z+.

For each method and target: reconstruction metrics (MSE, PSNR, SSIM, MS-SSIM from torchmetrics),
the perceptual distance, identity similarity to the target, seconds per image, and editing: along
GANSpace directions at alpha in `edit_alphas` (W-kind directions for the base, the heads and PTI,
their Z counterparts for F/Z+),
- edit identity: the mean identity similarity between the target and its edits;
- edit change: the mean absolute pixel change an edit makes to the method's own unedited output;
  the table's edit strength is a method's edit change divided by the base encoder's for the same
  target (so base = 1.0): a head that reconstructs well by suppressing edits shows it here.

- base:      W = E(x), G(W)
- heads:     any `latentspaces.interfaces.CompensationHead` over the base encoder's W, by name
             (`HEADS`: sdic, hfgi, gradstyle, reganie): head.compensate(G, x, W); edits by head.edit
- pti:       PTI pivot + generator tuning, one generator per image (PTI's single-image mode, the setting
             its time per image is quoted in), as released (`config.pti`, `optimizers.PTI_RECIPES`); edits
             move the pivot in the tuned generator; pti_tune_steps.csv holds the steps each image tuned
- fzplus:    HybridInverter in F/Z+ initialised by the F encoder; edits move the detail z's

Per-image rows are appended to compensation_per_image.csv as each method finishes, after the images
to images/<method>.safetensors, with that file's fingerprint (images_sha256): an interrupted run
resumes with the methods still missing (`missing_methods`: a method lacking a target's row, or whose
images file is missing or not the one its rows recorded, is redone and its rows dropped first; one
row per (method, target)). The run holds OUT's lock throughout (`experiments.runs.hold_out_dir`). Under
`torchrun` the methods are sharded over the ranks and rank 0 writes the table and the grid.
Outputs: compensation_comparison.csv / .md and compensation_grid.png (rows: target, then methods).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from encoders import COMPENSATION_HEADS
from encoders.heads import compensate, edit_compensated, wplus_delta
from latentspaces.directions import Direction
from latentspaces.fingerprints import SHORT, digest, file_fingerprint, generator_fingerprint
from latentspaces.interfaces import IdentitySimilarity, PerceptualDistance
from latentspaces.images import load_image_file, save_image_file, to_uint8
from latentspaces.metrics.identity_calibration import IdentityCalibration
from latentspaces.metrics.image import reconstruction_metrics
from latentspaces.progress import progress_bar
from latentspaces.spaces import FZPlus
from optimizers import PAPER, PTI, RECIPES, HybridInverter, InversionRecipe
from optimizers.pti import PIVOT_STEPS, PTI_RECIPES, TUNE_STEPS, PTIRecipe, tuning_distance_name

from ..argtypes import name_list, positive_int, step_count
from ..argtypes import seed as seed_flag
from ..config import Config, option

from ..distributed import World
from ..figures import labelled_grid, tile_caption
from ..rows import RowSchema, RunFolderWarning, append_rows, read_rows, write_rows
from ..runs import claim_out_dir, file_problem, hold_out_dir
from ..summaries import mean_std_rows, write_mean_std_table
from .calibration import calibrated_fields, folder_calibration
from .inversions import ALWAYS_SCORED, metric_name
from .presets import DIRECTION_SAMPLES, DIRECTIONS, TARGETS
from .identity_curves import edit_directions
from .matched_edits import edit_sizes_option, edit_with_alphas, matched_edit_rows, matched_summary, paired_columns, pixel_change

HEADS = COMPENSATION_HEADS    # compensation heads by method name, in the order of the table
METHODS = ["base", *HEADS, "pti", "fzplus"]
PER_IMAGE_CSV = "compensation_per_image.csv"
MATCHED_CSV = "compensation_matched_edits.csv"   # identity at matched edit sizes (studies.matched_edits)
MATCHED_FIELDS = ["method", "target", "direction", "sign", "size", "alpha", "edit_change", "identity", "images_sha256"]
MATCHED = RowSchema(tuple(MATCHED_FIELDS), key=("method", "target", "direction", "sign", "size"),
                    ints=("target", "sign"), floats=("size",))
SETTINGS_FILE = "compensation_settings.json"
PTI_STEPS_CSV = "pti_tune_steps.csv"   # target, tuning steps PTI ran (its early stop)
SUMMARY = ["mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "edit_identity", "edit_change", "seconds"]
FIELDS = ["method", "target", *SUMMARY, "images_sha256"]
# edit_change is optional: rows written before it existed read '' (NaN edit strength), never refused.
PER_IMAGE = RowSchema(tuple(FIELDS), key=("method", "target"), ints=("target",),
                      floats=tuple(k for k in SUMMARY if k != "edit_change"), finite=ALWAYS_SCORED)
TABLE_COLUMNS = [("MSE", "mse", ".4f", True), ("SSIM", "ssim", ".3f", True), ("perceptual", "perceptual", ".3f", True),
                 ("identity", "identity", ".3f", True), ("edit identity", "edit_identity", ".3f", True),
                 ("edit strength", "edit_strength", ".2f", True), ("s / image", "seconds_per_image", ".3g", False)]


def _edit_scores(identity: Optional[IdentitySimilarity], targets: torch.Tensor, images: torch.Tensor,
                 render: Callable[[Direction, float], torch.Tensor], directions: Sequence[Direction],
                 alphas: Sequence[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(edit identity [N], edit change [N]): over directions x alphas, the mean identity(render(d, a), targets)
    (NaN without an identity metric) and the mean absolute pixel change |render(d, a) - images|."""
    sims, changes = [], []
    for d in directions:
        for a in alphas:
            with torch.no_grad():
                edited = render(d, a)
                changes.append(pixel_change(edited, images).cpu())
                if identity is not None:
                    sims.append(identity(edited, targets).reshape(-1).cpu())
    n = targets.shape[0]
    return (torch.stack(sims).mean(0) if sims else torch.full((n,), math.nan)), torch.stack(changes).mean(0)


@dataclass(frozen=True)
class CompensationConfig(Config):
    """`latentspaces compensation` and `run_compensation_comparison`. The recipe is the F/Z+ method's (its steps,
    lr and weights; the method always starts from the F encoder: that start is what makes it the method of
    "Revisiting Latent Space of GAN Inversion"); PTI's form is `pti` (`optimizers.PTI_RECIPES`: 'released' in
    the paper preset, 'ours' in the quick one), its perceptual weight 1 whenever a distance is on.
    Default: the `paper` preset."""

    n_targets: int = option(TARGETS["paper"], "number of held-out targets", type=positive_int, names=("--n",))
    recipe: InversionRecipe = PAPER
    pivot_steps: int = option(PIVOT_STEPS, "PTI pivot (W projection) steps", type=step_count)
    tune_steps: int = option(TUNE_STEPS, "PTI generator tuning steps (at most: the released form stops an image "
                                         "early once its tuning distance is <= 0.06)", type=step_count)
    pti: str = option("released", "PTI's form: 'released' (danielroich/PTI: perceptual pivot with optimised noise, "
                                  "LPIPS-AlexNet tuning or a named stand-in, early stop) or 'ours' (the earlier form)",
                      choices=tuple(PTI_RECIPES))
    directions: int = DIRECTIONS["paper"]                 # GANSpace directions per kind for the edit identity
    direction_samples: int = DIRECTION_SAMPLES["paper"]   # W samples of the GANSpace PCA
    seed: int = option(0, "GANSpace sampling, 0 .. 2^32 - 1", type=seed_flag)
    edit_sizes: Tuple[float, ...] = edit_sizes_option()
    edit_alphas: Tuple[float, ...] = (-2.0, 2.0)          # edit strengths of the edit identity and change
    methods: Optional[Tuple[str, ...]] = option(None, f"methods to run, comma-separated from {','.join(METHODS)}",
                                                type=name_list(tuple(METHODS), "method"),
                                                default_text="base, every head given or installed, pti, fzplus")


CompensationConfig.PRESETS = {
    name: CompensationConfig(n_targets=TARGETS[name], recipe=recipe, directions=DIRECTIONS[name],
                             direction_samples=DIRECTION_SAMPLES[name],
                             **({"pivot_steps": 100, "tune_steps": 100, "pti": "ours"} if name == "quick" else {}))
    for name, recipe in RECIPES.items()}


@dataclass
class CompensationModels:
    """The networks of a compensation run, loaded once by the caller."""

    base: torch.nn.Module                                  # W+ encoder: x [N, 3, R, R] -> ws [N, num_ws, w_dim]
    f: torch.nn.Module                                     # F encoder: the F/Z+ method's start
    heads: Dict[str, torch.nn.Module] = field(default_factory=dict)   # head name (HEADS) -> head over `base`


def fzplus_recipe(config: CompensationConfig, perceptual: Optional[PerceptualDistance]) -> InversionRecipe:
    """The F/Z+ method's recipe as it runs: config.recipe from the F encoder, with the weights that take effect
    (`InversionRecipe.effective`: no perceptual weight without a distance)."""
    return config.recipe.replace(init="encoder").effective(perceptual=perceptual is not None, encoder=True)


def pti_recipe(config: CompensationConfig, perceptual: Optional[PerceptualDistance]) -> PTIRecipe:
    """PTI's recipe as it runs: the config's form and steps, perceptual weight 1 when a distance is on."""
    return replace(PTI_RECIPES[config.pti], pivot_steps=config.pivot_steps, tune_steps=config.tune_steps,
                   lambda_per=1.0 if perceptual is not None else 0.0)


def method_settings(config: CompensationConfig, perceptual: Optional[PerceptualDistance]) -> Dict[str, dict]:
    """PTI's and F/Z+'s settings (recorded with the run): PTI's recipe and the distances it runs with (a stand-in
    named as such), and F/Z+'s recipe as it runs (`fzplus_recipe`)."""
    recipe = pti_recipe(config, perceptual)
    return {"pti": {**recipe.record(), "pivot_distance": metric_name(perceptual),
                    "tune_distance": tuning_distance_name(recipe, perceptual)},
            "fzplus": fzplus_recipe(config, perceptual).record()}


def _matched_rows(identity: Optional[IdentitySimilarity], targets: torch.Tensor, images: torch.Tensor,
                  render_each: Callable[[Direction, torch.Tensor], torch.Tensor], directions: Sequence[Direction],
                  sizes: Sequence[float]) -> List[dict]:
    """Per direction, sign and size, the matched alpha, change and identity of each image (`matched_edits`);
    [] without an identity metric or sizes. render_each(d, alphas [N]) -> edited images [N, 3, R, R]."""
    if identity is None or not sizes:
        return []
    rows = []
    for d in directions:
        found = matched_edit_rows(lambda a: render_each(d, a), images, targets, identity, sizes)
        rows += [{**r, "direction": d.name} for r in found]
    return rows


def run_method(method: str, G: torch.nn.Module, targets: torch.Tensor, models: CompensationModels,
               directions: Dict[str, List[Direction]], config: CompensationConfig,
               perceptual: Optional[PerceptualDistance], identity: Optional[IdentitySimilarity],
               notes: Optional[dict] = None):
    """(images [N, 3, R, R], edit identity [N], edit change [N], seconds per image, matched-size rows) for one
    method; the rows (`_matched_rows`) give each edit's alpha at each size in `sizes`. `notes` receives what a
    method has to say besides ('pti_tune_steps': the tuning steps PTI ran per image)."""
    notes = {} if notes is None else notes
    n = targets.shape[0]
    alphas, sizes = config.edit_alphas, config.edit_sizes
    if method == "base" or method in HEADS:
        if method in HEADS and method not in models.heads:
            raise KeyError(f"no {method} head was given (models has {sorted(models.heads)})")
        head = models.heads[method] if method in HEADS else None
        t0 = time.perf_counter()
        comp = compensate(G, models.base, head, targets)
        seconds = (time.perf_counter() - t0) / n
        images = comp.image

        def render(d, a):   # a: a number, or one alpha per image [N, 1, 1]
            return edit_compensated(G, head, comp, d, a)

        def render_each(d, a):
            return render(d, a.reshape(-1, 1, 1))
        return (images, *_edit_scores(identity, targets, images, render, directions["w"], alphas), seconds,
                _matched_rows(identity, targets, images, render_each, directions["w"], sizes))
    if method == "pti":
        res = PTI(G, pti_recipe(config, perceptual), perceptual, per_image=True, progress=False).run(targets)
        notes["pti_tune_steps"] = res.tune_steps_run
        pivots = [g.broadcast(res.pivots[i:i + 1]) for i, g in enumerate(res.generator)]

        def render(d, a):
            return torch.cat([g.synthesis(p + wplus_delta(g, p, d, a), noise_mode="const")
                              for g, p in zip(res.generator, pivots)])

        def render_each(d, a):   # one tuned generator per image, each with its own alpha
            return torch.cat([g.synthesis(p + wplus_delta(g, p, d, float(a_i)), noise_mode="const")
                              for g, p, a_i in zip(res.generator, pivots, a)])
        return (res.images, *_edit_scores(identity, targets, res.images, render, directions["w"], alphas),
                res.seconds / n, _matched_rows(identity, targets, res.images, render_each, directions["w"], sizes))
    if method == "fzplus":
        space = FZPlus(G, **config.recipe.space_options("FZPlus"))
        res = HybridInverter.from_recipe(space, fzplus_recipe(config, perceptual), perceptual, encoder=models.f,
                                         progress=False).invert(targets)

        def render(d, a):
            return space.synthesize(space.edit(res.code, d, a))

        def render_each(d, a):
            return edit_with_alphas(space, res.code, d, a)
        return (res.images, *_edit_scores(identity, targets, res.images, render, directions["z"], alphas),
                res.seconds / n, _matched_rows(identity, targets, res.images, render_each, directions["z"], sizes))
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def run_compensation_comparison(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                  # [N, 3, R, R] in [-1, 1]
    models: CompensationModels,             # the base W+ encoder, the F encoder, the heads to run
    config: Optional[CompensationConfig] = None,   # None: CompensationConfig(), the paper preset
    perceptual: Optional[PerceptualDistance] = None,
    identity: Optional[IdentitySimilarity] = None,
) -> List[dict]:
    """Run each method still missing from OUT (sharded over `torchrun` ranks); rank 0 returns the summary rows.

    The methods are config.methods, or base, every head in `models`, pti and fzplus. The GANSpace directions
    of the edits (both kinds, std-scaled) are found once and cached in OUT (`identity_curves.edit_directions`).
    """
    c = config or CompensationConfig()
    world = World.current()
    n = len(targets)
    methods = c.methods or ["base", *[h for h in HEADS if h in models.heads], "pti", "fzplus"]
    with hold_out_dir(out):
        out.mkdir(parents=True, exist_ok=True)
        directions = world.main_first(lambda: edit_directions(G, out, c.directions, c.direction_samples, c.seed))
        recorded = compensation_settings(G, models, directions, method_settings(c, perceptual), perceptual, identity,
                                         c.edit_alphas)
        world.from_main(lambda: claim_out_dir(out, recorded, targets, (PER_IMAGE_CSV, "images"), SETTINGS_FILE))
        (out / "images").mkdir(parents=True, exist_ok=True)
        todo = world.from_main(lambda: missing_methods(out, methods, n, matched=identity is not None and
                                                       bool(c.edit_sizes)))
        for method in progress_bar(world.shard(todo), desc="compensation comparison", unit="method", disable=not world.main):
            notes: dict = {}
            images, edit_id, edit_change, seconds, matched = run_method(method, G, targets, models, directions, c,
                                                                        perceptual, identity, notes)
            if "pti_tune_steps" in notes:   # how many tuning steps each image took before the early stop
                write_rows(out / PTI_STEPS_CSV, [{"target": i, "tune_steps": s}
                                                 for i, s in enumerate(notes["pti_tune_steps"])], ["target", "tune_steps"])
            with torch.no_grad():
                m = reconstruction_metrics(images, targets)
                per = perceptual(images, targets).reshape(-1) if perceptual else torch.full((n,), math.nan)
                ident = identity(images, targets).reshape(-1) if identity else torch.full((n,), math.nan)
            path = _images_path(out, method)
            save_image_file(path, images, method=method)
            sha = file_fingerprint(path)
            # the matched-size rows first: a method whose per-image rows are complete has its matched rows too
            append_rows(out / MATCHED_CSV, [
                {"method": method, "target": r["target"], "direction": r["direction"], "sign": r["sign"],
                 "size": f"{r['size']:g}", "alpha": f"{r['alpha']:.6g}", "edit_change": f"{r['edit_change']:.6g}",
                 "identity": f"{r['identity']:.6g}", "images_sha256": sha} for r in matched], MATCHED_FIELDS)
            append_rows(out / PER_IMAGE_CSV, [
                {"method": method, "target": i, **{k: f"{float(v[i]):.6g}" for k, v in m.items()},
                 "perceptual": f"{float(per[i]):.6g}", "identity": f"{float(ident[i]):.6g}",
                 "edit_identity": f"{float(edit_id[i]):.6g}", "edit_change": f"{float(edit_change[i]):.6g}",
                 "seconds": f"{seconds:.4g}", "images_sha256": sha}
                for i in range(n)], FIELDS)
        world.barrier()
        if not world.main:
            return []
        summary = summarize(out, methods, n, folder_calibration(out, identity, targets))
        grid(out, targets, methods)
    return summary


def compensation_settings(G: torch.nn.Module, models: CompensationModels, directions: Dict[str, List[Direction]],
                          settings: Dict[str, dict], perceptual: Optional[PerceptualDistance],
                          identity: Optional[IdentitySimilarity], edit_alphas: Sequence[float]) -> Dict[str, object]:
    """What decides the rows of a compensation run (recorded in SETTINGS_FILE by `claim_out_dir`): the
    generator's, encoders' and directions' fingerprints, every method's settings and the metrics' names."""
    networks = {"base": models.base, "f": models.f, **models.heads}
    return {"generator": generator_fingerprint(G),
            "models": {name: generator_fingerprint(m) for name, m in sorted(networks.items())},
            "directions": {kind: digest(*(d.vector.float() for d in dirs), length=SHORT)
                           for kind, dirs in sorted(directions.items())},
            "methods": {name: dict(sorted(kwargs.items())) for name, kwargs in sorted(settings.items())},
            "perceptual": metric_name(perceptual), "identity": metric_name(identity),
            "edit_alphas": [float(a) for a in edit_alphas]}


def _images_path(out: Path, method: str) -> Path:
    return out / "images" / f"{method}.safetensors"


def missing_methods(out: Path, methods: Sequence[str], n: int, matched: bool = False) -> List[str]:
    """The methods to (re)run for `n` targets, after repairing OUT's per-image CSV.

    A method is kept when targets 0 .. n-1 all have a row and its images file is the one its rows
    recorded (rows written before fingerprints were: the file exists, and its fingerprint is recorded);
    else it is redone and all its rows are dropped (its images file is rewritten for these targets).
    The CSV is rewritten atomically, only if anything changed, with one row per (method, target).
    """
    path = out / PER_IMAGE_CSV
    rows = read_rows(path, PER_IMAGE)
    matched_rows = read_rows(out / MATCHED_CSV, MATCHED)
    todo = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if matched and mine and not _matched_complete(matched_rows, method, n, mine[0]["images_sha256"]):
            warnings.warn(f"{out / MATCHED_CSV} lacks the matched-size edits of {method}: redoing it", RunFolderWarning, stacklevel=2)
        elif {int(r["target"]) for r in mine} >= set(range(n)):
            recorded = {r["images_sha256"] for r in mine}
            problem = (f"the rows of {method} record {len(recorded)} different images files" if len(recorded) > 1
                       else file_problem(_images_path(out, method), recorded.pop()))
            if problem is None:
                if not mine[0]["images_sha256"]:  # rows older than fingerprints adopt the file they name
                    sha = file_fingerprint(_images_path(out, method))
                    for r in mine:
                        r["images_sha256"] = sha
                continue
            warnings.warn(f"{problem}: redoing {method}", RunFolderWarning, stacklevel=2)
        elif mine:
            warnings.warn(f"{path} has rows for {len(mine)} of the {n} targets of {method}: redoing it",
                          RunFolderWarning, stacklevel=2)
        todo.append(method)
    kept = [r for r in rows if r["method"] not in todo]
    if kept or path.exists():
        write_rows(path, kept, FIELDS)
    kept_matched = [r for r in matched_rows if r["method"] not in todo]
    if len(kept_matched) != len(matched_rows):
        write_rows(out / MATCHED_CSV, kept_matched, MATCHED_FIELDS)
    return todo


def _matched_complete(rows: Sequence[dict], method: str, n: int, sha: str) -> bool:
    """Whether `method` has matched-size rows for every target 0 .. n-1, all made from the images file `sha`."""
    mine = [r for r in rows if r["method"] == method]
    return {int(r["target"]) for r in mine} >= set(range(n)) and all(r["images_sha256"] == sha for r in mine)


def summarize(out: Path, methods: Sequence[str], n_targets: Optional[int] = None,
              calibration: Optional[IdentityCalibration] = None) -> List[dict]:
    """Mean and std per method over the first `n_targets` targets (all when None) -> compensation_comparison.csv
    and .md; returns the rows. Edit strength: per target, a method's edit change over the base encoder's
    (NaN without base rows). With an identity `calibration`, identity and edit identity also on the
    calibrated scale, the baseline stated under the table."""
    rows = read_rows(out / PER_IMAGE_CSV, PER_IMAGE)
    if n_targets is not None:
        rows = [r for r in rows if int(r["target"]) < n_targets]
    rows = [{**r, "edit_change": r["edit_change"] or "nan"} for r in rows]
    base_change = {int(r["target"]): float(r["edit_change"]) for r in rows if r["method"] == "base"}
    rows = [{**r, "edit_strength": float(r["edit_change"]) / base_change[int(r["target"])]
             if base_change.get(int(r["target"]), 0) > 0 else math.nan} for r in rows]
    metrics, columns, note = [*SUMMARY, "edit_strength"], list(TABLE_COLUMNS), ""
    matched = [r for r in read_rows(out / MATCHED_CSV, MATCHED) if n_targets is None or int(r["target"]) < n_targets]
    sizes = sorted({float(r["size"]) for r in matched})
    if sizes:   # per target, the mean identity of its edits that reached each size (NaN where none did)
        by_key: Dict[Tuple[str, int, float], List[dict]] = {}
        for r in matched:
            by_key.setdefault((r["method"], int(r["target"]), float(r["size"])), []).append(r)
        for r in rows:
            for size in sizes:
                got = matched_summary(by_key.get((r["method"], int(r["target"]), size), []))
                values = got.get(size, {}).get("identity", [])
                r[f"identity_at_size_{size:g}"] = sum(values) / len(values) if values else math.nan
        metrics += [f"identity_at_size_{size:g}" for size in sizes]
        columns[-1:-1] = [(f"identity at edit size {size:g}", f"identity_at_size_{size:g}", ".3f", True)
                          for size in sizes]
    if calibration is not None:
        rows = [{**r, "identity_calibrated": calibrated_fields(float(r["identity"]), calibration)["identity_calibrated"],
                 "edit_identity_calibrated": calibrated_fields(float(r["edit_identity"]),
                                                               calibration)["identity_calibrated"]} for r in rows]
        metrics += ["identity_calibrated", "edit_identity_calibrated"]
        columns[-1:-1] = [("identity (cal.)", "identity_calibrated", ".3f", True),
                          ("edit identity (cal.)", "edit_identity_calibrated", ".3f", True)]
        note = calibration.describe()
    summary = mean_std_rows(rows, "method", methods, metrics, skip_nan=[m for m in metrics if "_at_size_" in m])
    if matched:   # each method against the base encoder, paired per edit at every matched size
        versus = paired_columns(matched, methods, "base", name_field="method")
        for row in summary:
            row.update(versus.get(row["method"], {}))
    write_mean_std_table(out, "compensation_comparison", summary, "method", columns, note)
    return summary


def grid(out: Path, targets: torch.Tensor, methods: Sequence[str], max_cols: int = 8) -> None:
    """compensation_grid.png: the first `max_cols` targets [N, 3, R, R] and below them each method's images,
    rows labelled with the method, columns with the target index, each image with its MSE and identity."""
    k = min(max_cols, targets.shape[0])
    scores = {(r["method"], int(r["target"])): r for r in read_rows(out / PER_IMAGE_CSV, PER_IMAGE)}
    rows, names, captions = [to_uint8(targets[:k])], ["targets"], [None]
    for method in methods:
        path = _images_path(out, method)
        if path.is_file():
            rows.append(load_image_file(path)[:k])
            names.append(method)
            captions.append([tile_caption(scores.get((method, i))) for i in range(k)])
    labelled_grid(out / "compensation_grid.png", rows, names, [f"target {i}" for i in range(k)], captions,
                  title="Reconstructions per method (MSE, identity to the target)")
