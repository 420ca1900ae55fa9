"""The inversions a run folder shares: made chunk by chunk, resumable, sharded, rescored.

`compare` (the space comparison) and `identity-curves` invert the same targets into the same spaces
with the same settings; whichever runs first into OUT makes each chunk once:

  codes/{Space}_{start}.safetensors  the optimized codes and uint8 reconstructions of each chunk
  space_comparison_per_image.csv     one row per (space, target), appended as each chunk finishes, with
                                     the fingerprint of its chunk's code file (codes_sha256)
  inversion_settings.json            the settings and target fingerprints the codes belong to

A rerun with other settings or other targets into the same OUT is refused (`experiments.runs.claim_out_dir`),
and so is one into an OUT whose settings file is gone or garbled while it holds codes or rows. On resume,
`missing_chunks` repairs the per-image CSV (torn, malformed and repeated rows dropped, one row per key)
and redoes every chunk that lacks a row, or whose code file is missing or is not the one its rows
recorded; the rows of a redone chunk are dropped first, so no (space, target) is ever counted twice.
`fill_identity` scores the rows of a folder inverted without an identity metric.

This module is the inversion folder's one home: its schema (`PER_IMAGE`), its chunk code files
(`chunk_path`, `save_chunk`, `load_codes`: the latentspaces.code format; files of earlier runs, without
a format header, still load; `load_codes` with `checksums` refuses a chunk whose file is not the one its
rows recorded), its settings (`inversion_settings`) and its resume (`missing_chunks`, `invert_missing`).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from latentspaces import assets
from latentspaces.errors import CheckpointError
from latentspaces.fingerprints import file_fingerprint, generator_fingerprint
from latentspaces.interfaces import CodeInitializer, IdentitySimilarity, PerceptualDistance
from latentspaces.images import to_uint8
from latentspaces.metrics.perceptual import make_perceptual
from latentspaces.metrics.image import reconstruction_metrics
from encoders import load_encoder
from latentspaces.progress import progress_bar
from latentspaces.spaces import Code, PNStats, build_space, is_f_space, read_code_file
from optimizers import HybridInverter, InversionRecipe

from ..distributed import World
from ..rows import RowSchema, RunFolderError, RunFolderWarning, append_rows, read_rows, write_rows
from ..runs import SETTINGS_FILE, claim_out_dir, file_problem, hold_out_dir, read_settings, write_settings

PER_IMAGE_CSV = "space_comparison_per_image.csv"
METRICS = ["mse", "psnr", "ssim", "ms_ssim", "perceptual", "identity", "seconds"]
PER_IMAGE_FIELDS = ["space", "target", *METRICS, "codes_sha256"]
ALWAYS_SCORED = ("mse", "ssim", "seconds")   # finite in every row (PSNR is inf at mse 0, MS-SSIM can be NaN)
PER_IMAGE = RowSchema(tuple(PER_IMAGE_FIELDS), key=("space", "target"), ints=("target",), floats=tuple(METRICS),
                      finite=ALWAYS_SCORED)
INVERSION_RESULTS = (PER_IMAGE_CSV, "codes")  # what `claim_out_dir` refuses to claim without a settings file


# ---------------------------------------------------------------------------------- chunk code files
def chunk_path(out: Path, space: str, start: int) -> Path:
    """codes/{space}_{start}.safetensors: the codes of targets start, start + 1, ... in one space."""
    return out / "codes" / f"{space}_{start}.safetensors"


def save_chunk(out: Path, space: str, start: int, code: Code, images: torch.Tensor, steps: int,
               generator: Optional[str] = None, space_options: Optional[Mapping[str, object]] = None) -> str:
    """Write one chunk's codes [n, ...] and their reconstructions [n, 3, R, R] in [-1, 1] (stored uint8),
    with the generator's fingerprint (`latentspaces.fingerprints`) when given and the space's options
    (`LatentSpace.options`: a recipe's truncation) when it has any; returns the file's fingerprint, for
    its rows."""
    path = chunk_path(out, space, start)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"space_options": dict(space_options)} if space_options else {}
    code.save(path, space=space, images=to_uint8(images), start=start, steps=steps, generator_fingerprint=generator,
              **extra)
    return file_fingerprint(path)


def _chunk_files(out: Path, space: str) -> List[Tuple[int, Path]]:
    """(start, path) of the chunk files of one space in OUT, by start (other files in codes/ ignored)."""
    pattern = re.compile(rf"{re.escape(space)}_(\d+)\.safetensors")
    found = [(int(m.group(1)), p) for p in (out / "codes").glob(f"{space}_*.safetensors")
             if (m := pattern.fullmatch(p.name))]
    return sorted(found)


def load_codes(out: Path, space: str, n: int, device: str | torch.device = "cpu",
               checksums: Optional[Mapping[int, str]] = None) -> Code:
    """The optimized codes [n, ...] of the first `n` targets in one space, from the chunk files in OUT.

    checksums: chunk start -> the fingerprint recorded with its rows; a chunk file of the first `n`
    targets that is missing or differs raises `RunFolderError` (saying how to redo it) before any is read.
    A file that is not a code file raises `CheckpointError` naming it.
    """
    for start, recorded in sorted((checksums or {}).items()):
        problem = file_problem(chunk_path(out, space, start), recorded) if start < n else None
        if problem:
            raise RunFolderError(f"{problem}; rerun compare or identity-curves into {out} with its settings to "
                                 "redo that chunk")
    parts = _chunk_files(out, space)
    loaded = [read_code_file(p, device) for _, p in parts]
    sizes = [len(f.code) for f in loaded]
    if sum(sizes) < n or [start for start, _ in parts] != [sum(sizes[:i]) for i in range(len(parts))]:
        raise RunFolderError(f"{out / 'codes'} holds no contiguous {space} codes for {n} targets (found "
                             f"{sum(sizes)}); run the inversions first (invert_missing)")
    code = Code.cat([f.code for f in loaded])
    return Code(**{k: code[k][:n] for k in code.fields})


def chunk_space_options(out: Path, space: str) -> Dict[str, object]:
    """The space options (`LatentSpace.options`: a recipe's truncation) the chunk files of one space in OUT were
    rendered with; {} when they record none. RunFolderError when the files disagree."""
    found = {json.dumps(read_code_file(p).space_options, sort_keys=True) for _, p in _chunk_files(out, space)}
    if len(found) > 1:
        raise RunFolderError(f"the {space} code files in {out / 'codes'} were rendered with different options "
                             f"({', '.join(sorted(found))}); rerun into a new folder")
    return json.loads(found.pop()) if found else {}


# ---------------------------------------------------------------------------------- settings and rows
def metric_name(metric: Optional[object]) -> str:
    """The name a perceptual or identity metric is recorded under ('none' for None)."""
    return "none" if metric is None else getattr(metric, "name", type(metric).__name__)


def inversion_settings(G: torch.nn.Module, recipe: InversionRecipe, perceptual: Optional[PerceptualDistance],
                       identity: Optional[IdentitySimilarity], chunk: int, seed: int) -> Dict[str, object]:
    """What decides the codes and the per-image rows of a run (recorded by `claim_out_dir`): the recipe
    (its name and numbers, the weights that take effect: no perceptual weight without a distance, no
    anchor without an encoder start), the metrics by name, the chunk and the seed of a random start."""
    record = recipe.effective(perceptual=perceptual is not None, encoder=True).record()
    return {"generator": generator_fingerprint(G), **record, "perceptual": metric_name(perceptual),
            "identity": metric_name(identity), "chunk": chunk, "seed": seed}


def study_models(G: torch.nn.Module, recipe: InversionRecipe, spaces: Sequence[str],
                 perceptual: Optional[PerceptualDistance] = None,
                 encoders: Optional[Mapping[str, CodeInitializer]] = None,
                 ) -> Tuple[Optional[PerceptualDistance], Mapping[str, CodeInitializer]]:
    """(perceptual, encoders) of a study: those given, else the ones `recipe` names.

    The perceptual distance is made by `recipe.perceptual` ('auto': LPIPS-VGG where its backbone is on
    this machine, else D-features) even when the loss does not weigh it: the tables report it. The
    encoders are `recipe_encoders`' defaults on G's device.
    """
    if perceptual is None and recipe.perceptual != "none":
        perceptual = make_perceptual(recipe.perceptual, G.resolution, G.w_avg.device)
    if encoders is None:
        encoders = recipe_encoders(recipe, spaces, device=G.w_avg.device)
    return perceptual, encoders


def recipe_line(recipe: InversionRecipe, perceptual: Optional[PerceptualDistance]) -> str:
    """The line under a table that says how its codes were made ('Recipe paper: 1200 Adam steps ...')."""
    line = recipe.describe().replace(f"({recipe.perceptual})", f"({metric_name(perceptual)})")
    return f"Recipe {line}."


# Settings keys that folders made before recipes were named lack; a resumed run adopts them when the rest match.
RECIPE_KEYS = ("recipe", "lambda_mse")


def recipe_encoders(recipe: InversionRecipe, spaces: Sequence[str], f_encoder: str = assets.DEFAULT_F_ENCODER,
                    wplus_encoder: str = assets.DEFAULT_WPLUS_ENCODER,
                    device: str | torch.device = "cpu") -> Dict[str, CodeInitializer]:
    """Space name -> the encoder that starts it under `recipe` ({} unless recipe.init is 'encoder').

    "Revisiting Latent Space of GAN Inversion" starts F spaces from the F encoder (Eq. 2); W+, W, S, P_N
    and F-less W-type spaces start from a W+ encoder (`encoders.WPlusEncoder.init_code` maps its W+ to
    each); Z and Z+ have no encoder and start from their mean. Each named encoder is loaded once.
    """
    if recipe.init != "encoder":
        return {}
    loaded: Dict[str, CodeInitializer] = {}

    def encoder(name: str) -> CodeInitializer:
        if name not in loaded:
            loaded[name] = load_encoder(name, device)
        return loaded[name]

    names = {"f": f_encoder, "wplus": wplus_encoder}
    return {s: encoder(names[starting_encoder(s)]) for s in spaces if starting_encoder(s) is not None}


WPLUS_STARTED = ("WPlus", "W", "S", "PN")   # the W-type spaces a W+ encoder starts (recipe init 'encoder')


def starting_encoder(space: str) -> Optional[str]:
    """Which encoder starts `space` under recipe init 'encoder': 'f' (F spaces, Eq. 2 of "Revisiting Latent Space
    of GAN Inversion"), 'wplus' (the W-type spaces) or None (Z and Z+ start from their mean)."""
    if is_f_space(space):
        return "f"
    return "wplus" if space in WPLUS_STARTED else None


def _nan(n: int) -> torch.Tensor:
    return torch.full((n,), math.nan)


def _chunk_problem(out: Path, space: str, start: int, rows: List[dict]) -> Optional[str]:
    """Why the rows of one complete chunk cannot be kept (its code file missing or not theirs), or None.

    Rows written before fingerprints were recorded (codes_sha256 empty) adopt the chunk file when it
    reads as a code file of this space and start with one code per row: its fingerprint is written
    into them.
    """
    path = chunk_path(out, space, start)
    recorded = {r["codes_sha256"] for r in rows}
    if len(recorded) > 1:
        return f"the rows of {path} record {len(recorded)} different code files"
    problem = file_problem(path, recorded.pop())
    if problem or rows[0]["codes_sha256"]:
        return problem
    try:
        saved = read_code_file(path)
    except CheckpointError as e:
        return str(e)
    said = (saved.space or space, str(saved.meta.get("start", start)), len(saved.code))
    if said != (space, str(start), len(rows)):
        return f"{path} holds {said[2]} {said[0]} codes from {said[1]}, not {len(rows)} {space} codes from {start}"
    sha = file_fingerprint(path)
    for r in rows:
        r["codes_sha256"] = sha
    return None


def missing_chunks(out: Path, spaces: Sequence[str], n: int, chunk: int) -> List[Tuple[str, int]]:
    """The (space, start) chunks of the first `n` targets to (re)make, after repairing the per-image CSV.

    A chunk is kept when every target of it has a row and its code file is the one the rows recorded;
    else it is redone and its rows are dropped (with a warning saying why, unless it was never begun).
    The CSV is rewritten (atomically, only if anything changed) with one row per (space, target), so the
    rows that remain and those appended by the redone chunks never count a target twice. Rows of other
    spaces, and of targets beyond `n` in chunks not redone, are kept as they are.
    """
    path = out / PER_IMAGE_CSV
    rows = read_rows(path, PER_IMAGE)
    groups: Dict[Tuple[str, int], List[dict]] = {}
    for r in rows:
        groups.setdefault((r["space"], int(r["target"]) // chunk * chunk), []).append(r)
    jobs = []
    for name in spaces:
        for start in range(0, n, chunk):
            mine = groups.get((name, start), [])
            if {int(r["target"]) for r in mine} >= set(range(start, min(start + chunk, n))):
                problem = _chunk_problem(out, name, start, mine)
                if problem is None:
                    continue
                warnings.warn(f"{problem}: redoing the {name} chunk of targets {start}..", RunFolderWarning, stacklevel=2)
            elif mine:
                warnings.warn(f"{path} has rows for {len(mine)} of the targets of the {name} chunk at {start}: "
                              "redoing the chunk", RunFolderWarning, stacklevel=2)
            jobs.append((name, start))
    redo = set(jobs)
    kept = [r for r in rows if (r["space"], int(r["target"]) // chunk * chunk) not in redo]
    if kept or path.exists():
        write_rows(path, kept, PER_IMAGE_FIELDS)
    return jobs


def chunk_checksums(out: Path, chunk: int) -> Dict[Tuple[str, int], str]:
    """(space, start) -> the code-file fingerprint the per-image rows of that chunk record ('' for older rows)."""
    return {(r["space"], int(r["target"]) // chunk * chunk): r["codes_sha256"] for r in read_rows(out / PER_IMAGE_CSV,
                                                                                                  PER_IMAGE)}


def invert_missing(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                             # [N, 3, R, R] in [-1, 1]
    spaces: Sequence[str],
    recipe: InversionRecipe,                           # steps, lr, loss weights and start (optimizers.recipes)
    perceptual: Optional[PerceptualDistance] = None,   # used in the loss (recipe.lambda_per > 0) and reported
    identity: Optional[IdentitySimilarity] = None,     # reported
    pn_stats: Optional[PNStats] = None,
    encoders: Optional[Mapping[str, CodeInitializer]] = None,  # space name -> its start (recipe init 'encoder')
    chunk: int = 8,
    seed: int = 0,                                     # the start of recipe init 'random'
    progress: bool = True,
    compile: bool = False,                             # HybridInverter(compile=...): equal to float rounding
) -> List[Tuple[str, int]]:
    """Invert every chunk of `targets` that OUT lacks (`missing_chunks`), into each space, one chunk at a time.

    Each finished chunk leaves codes/{Space}_{start}.safetensors (codes and uint8 reconstructions)
    and then its rows, with the file's fingerprint, in space_comparison_per_image.csv, so a killed run
    loses at most the chunk in progress. Call `claim_out_dir` first, holding OUT (`hold_out_dir`).
    Under `torchrun` rank 0 plans (and repairs the CSV), each rank inverts its round-robin share of the
    chunks (`experiments.distributed`); all ranks return, when all chunks are done, the (space, start)
    chunks made.
    """
    world = World.current()
    (out / "codes").mkdir(parents=True, exist_ok=True)
    per_image = out / PER_IMAGE_CSV
    encoders = encoders or {}
    jobs = world.from_main(lambda: missing_chunks(out, spaces, targets.shape[0], chunk))
    fingerprint = generator_fingerprint(G)
    progress = progress and world.main
    for name, start in progress_bar(world.shard(jobs), desc="inversions", unit="chunk", disable=not progress or not jobs):
        space = build_space(name, G, pn_stats, **recipe.space_options(name))
        inv = HybridInverter.from_recipe(space, recipe.effective(perceptual=perceptual is not None, encoder=True),
                                         perceptual, encoders.get(name), progress=progress, compile=compile)
        x = targets[start : start + chunk]
        res = inv.invert(x, seed=seed)
        m = reconstruction_metrics(res.images, x)
        with torch.no_grad():
            per = perceptual(res.images, x) if perceptual else _nan(len(x))
        ident = identity(res.images, x) if identity else _nan(len(x))
        sha = save_chunk(out, name, start, res.code, res.images, recipe.steps, generator=fingerprint,
                         space_options=space.options())
        rows = [{"space": name, "target": start + i, **{k: f"{float(v[i]):.6g}" for k, v in m.items()},
                 "perceptual": f"{float(per[i]):.6g}", "identity": f"{float(ident[i]):.6g}",
                 "seconds": f"{res.seconds / len(x):.4g}", "codes_sha256": sha} for i in range(len(x))]
        append_rows(per_image, rows, PER_IMAGE_FIELDS)
    world.barrier()
    return jobs


def invert_into(out: Path, G: torch.nn.Module, targets: torch.Tensor, spaces: Sequence[str], recipe: InversionRecipe,
                perceptual: Optional[PerceptualDistance], identity: Optional[IdentitySimilarity],
                pn_stats: Optional[PNStats], encoders: Mapping[str, CodeInitializer], chunk: int, seed: int,
                compile: bool = False) -> List[Tuple[str, int]]:
    """Claim OUT for these settings and targets (rank 0; a folder of other settings is refused), then make every
    chunk it lacks (`invert_missing`): the inversions `compare` and `identity-curves` share. The caller holds
    OUT (`hold_out_dir`) around this and whatever it reads of the results."""
    settings = inversion_settings(G, recipe, perceptual, identity, chunk, seed)
    World.current().from_main(lambda: claim_out_dir(out, settings, targets, INVERSION_RESULTS, adopt=RECIPE_KEYS))
    return invert_missing(out, G, targets, spaces, recipe, perceptual, identity, pn_stats, encoders, chunk, seed,
                          compile=compile)


def fill_identity(
    out: Path,
    G: torch.nn.Module,
    targets: torch.Tensor,                         # [N, 3, R, R] in [-1, 1]: the targets OUT was made with
    identity: IdentitySimilarity,                  # (images, targets) -> [N] similarities; has .name
    pn_stats: Optional[PNStats] = None,            # the statistics P_N codes were inverted with
    progress: bool = True,
) -> int:
    """Score the rows of OUT's per-image CSV that have no identity (a run made with identity=None).

    For inversions made where the identity model is not installed (a GPU machine without dlib, say):
    each chunk's reconstructions are regenerated from its code file, as float images like the ones a
    run with the metric scores (not the saved uint8 copies), compared with their targets, and the CSV
    is rewritten atomically. Once no row lacks an identity, the settings record the metric, so that
    `compare --identity ...` resumes the folder. Returns the number of rows filled. Holds OUT's lock;
    a code file that is missing, does not regenerate its saved images, or is not the one its rows
    recorded is refused (compare redoes it) before any row is rewritten.
    """
    with hold_out_dir(out):
        settings = read_settings(out)
        name = metric_name(identity)
        if settings.get("identity") not in ("none", name):
            raise RunFolderError(f"{out} was scored with identity {settings.get('identity')!r}, not {name!r}; "
                                 "identities of two metrics would mix in one column")
        claim_out_dir(out, {k: v for k, v in settings.items() if k != "targets"}, targets)  # same targets?
        per_image = out / PER_IMAGE_CSV
        rows = read_rows(per_image, PER_IMAGE)
        chunk = int(settings["chunk"])
        missing: Dict[tuple, List[dict]] = {}
        for r in rows:
            if math.isnan(float(r["identity"])):
                missing.setdefault((r["space"], int(r["target"]) // chunk * chunk), []).append(r)
        if any(int(r["target"]) >= targets.shape[0] for group in missing.values() for r in group):
            raise RunFolderError(f"{out} has rows for {1 + max(int(r['target']) for r in rows)} targets; "
                                 f"pass at least that many (got {targets.shape[0]})")
        redo = f"rerun compare into {out} with its settings (it redoes that chunk), then score-identity"
        for (space_name, start), group in progress_bar(sorted(missing.items()), desc="identity", unit="chunk",
                                               disable=not progress or not missing):
            path = chunk_path(out, space_name, start)
            if not path.is_file():
                raise RunFolderError(f"{path} is missing; {redo}")
            saved = read_code_file(path)
            space = build_space(space_name, G, pn_stats, **saved.space_options)
            with torch.no_grad():
                images = space.synthesize(saved.code.to(targets.device))
            # Up to 1/255 off where another device rounds a pixel the other way; more means another model.
            if (to_uint8(images).int() - saved.images.int()).abs().max() > 1:
                raise RunFolderError(f"the {space_name} codes of chunk {start} in {out} do not regenerate the images "
                                     "saved with them; score with the generator (and P_N statistics) they were "
                                     "inverted with")
            problem = file_problem(path, group[0]["codes_sha256"])  # a self-consistent file of another chunk
            if problem:
                raise RunFolderError(f"{problem}; {redo}")
            scores = identity(images, targets[start : start + len(images)])
            for r in group:
                r["identity"] = f"{float(scores[int(r['target']) - start]):.6g}"
        write_rows(per_image, rows, PER_IMAGE_FIELDS)
        if not any(math.isnan(float(r["identity"])) for r in rows) and settings.get("identity") != name:
            write_settings(out / SETTINGS_FILE, {**settings, "identity": name})
        return sum(len(group) for group in missing.values())


__all__ = ["INVERSION_RESULTS", "PER_IMAGE", "PER_IMAGE_CSV", "PER_IMAGE_FIELDS", "RECIPE_KEYS", "WPLUS_STARTED",
           "chunk_checksums", "fill_identity", "inversion_settings", "invert_into", "invert_missing", "metric_name",
           "missing_chunks", "recipe_encoders", "recipe_line", "starting_encoder", "study_models"]
