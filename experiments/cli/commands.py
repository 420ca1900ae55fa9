"""What each `latentspaces` command does, given its parsed flags (`experiments.cli.build_parser`).

Every command reads its numbers from its settings dataclass (`experiments.cli.settings`), built once
from the flags and the preset; the flags that pick files, models and devices are read from `args`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

import latentspaces as ls
from encoders import COMPENSATION_HEADS, FEncoder, load_encoder
from latentspaces import assets
from latentspaces.align import FaceAligner
from latentspaces.directions import ganspace, load_directions, random_directions, save_directions, sefa
from latentspaces.errors import FaceNotFoundError
from latentspaces.fingerprints import generator_fingerprint
from latentspaces.images import image_files, is_gray_batch, load_images, to_gray, to_uint8
from latentspaces.interfaces import CodeInitializer, IdentitySimilarity, PerceptualDistance
from latentspaces.metrics.identity import make_identity
from latentspaces.metrics.perceptual import make_perceptual
from latentspaces.progress import status
from latentspaces.spaces import SPACE_ORDER, build_space, read_code_file
from optimizers import HybridInverter

from ..app import Editor, serve
from ..argtypes import HELDOUT, UsageError
from ..distributed import World
from ..figures import labelled_grid
from ..photos import align_photos, alignment_for, code_transforms, paste_edits
from ..rows import read_rows
from ..runs import hold_out_dir, read_settings
from ..studies.calibration import folder_calibration, read_calibration
from ..studies.f_layer_sweep import run_f_layer_sweep
from ..studies.compensation import fzplus_settings, run_compensation_comparison
from ..studies.identity_curves import edit_directions, run_identity_curves
from ..studies.inversions import (PER_IMAGE_CSV, fill_identity, inversion_settings, recipe_encoders, recipe_line,
                                  starting_encoder)
from ..studies.paired_statistics import run_paired_statistics
from ..studies.space_comparison import f_size_line, run_space_comparison, summarize
from ..studies.tradeoff import write_tradeoff
from .checks import compensation_plan, perceptual_flag, perceptual_resolution
from .settings import (AlignSettings, CompareSettings, CompensationSettings, DirectionsSettings, EditSettings,
                       FLayerSweepSettings,
                       IdentityCurvesSettings, InvertSettings, PairedSettings, ScoreIdentitySettings)


def _generator(args: argparse.Namespace) -> ls.Generator:
    status(f"loading the generator {args.generator} on {args.device} ...")
    return ls.load_generator(args.generator, device=args.device)


def _targets(args: argparse.Namespace, G: ls.Generator, n: int) -> torch.Tensor:
    """The targets [n, 3, R, R] in [-1, 1]: the shipped held-out faces, or the image files of --targets."""
    if args.targets in (None, HELDOUT):
        if G.resolution != 64:
            raise UsageError(f"the shipped held-out targets are 64 px faces and this generator makes {G.resolution} "
                             "px images; pass --targets FILES")
        return assets.heldout_targets(n).to(args.device)
    return load_images(args.targets, G.resolution).to(args.device)


def _perceptual(args: argparse.Namespace) -> Optional[PerceptualDistance]:
    """The distance --perceptual names ('auto' by default), from the library's one lookup by name.

    `experiments.cli.checks.check_perceptual` has refused a name that does not fit the generator already."""
    return make_perceptual(perceptual_flag(args), perceptual_resolution(args), args.device)


def _identity(args: argparse.Namespace) -> Optional[IdentitySimilarity]:
    return make_identity(args.identity, args.device)


def _pn_stats(G: ls.Generator, n_samples: int) -> ls.PNStats:
    """The P_N statistics of G (fitted once and cached; under torchrun rank 0 fits, the others read the cache)."""
    world = World.current()
    return world.main_first(lambda: ls.PNStats.fit(G, n_samples=n_samples, progress=world.main))


def _pn_if_needed(G: ls.Generator, spaces: Sequence[str], n_samples: int) -> Optional[ls.PNStats]:
    """G's P_N statistics when one of `spaces` uses them (P_N, F/W+(P_N)), else None."""
    return _pn_stats(G, n_samples) if any(ls.SPACES[name].uses_pn_stats for name in spaces) else None


def _encoders(args: argparse.Namespace, recipe, spaces: Sequence[str]) -> Dict[str, CodeInitializer]:
    """Space name -> starting encoder under `recipe` ({} unless it starts from the encoders), from the flags."""
    return recipe_encoders(recipe, spaces, args.f_encoder or "default-f", args.wplus_encoder or "default-wplus",
                           args.device)


def _print_table(out: Path, name: str, wrote: str, since: Optional[float] = None) -> None:
    print((out / f"{name}.md").read_text())
    print(f"wrote {wrote}" + ("" if since is None else f" ({time.time() - since:.0f} s)"))


def _announce(recipe, perceptual: Optional[PerceptualDistance]) -> None:
    """Print the recipe the run inverts with (rank 0), the distance it resolved to included."""
    if World.current().main:
        print(recipe_line(recipe, perceptual))


def cmd_compare(args: argparse.Namespace) -> None:
    s = CompareSettings.from_args(args)
    perceptual, identity = _perceptual(args), _identity(args)   # models that may be missing: before the generator
    encoders = _encoders(args, s.recipe, s.spaces)
    G = _generator(args)
    targets = _targets(args, G, s.n_targets)
    t = time.time()
    out = Path(args.out)
    _announce(s.recipe, perceptual)
    f_line = f_size_line(G, s.spaces)
    if f_line and World.current().main:
        print(f_line)
    run_space_comparison(out, G, targets, s.spaces, s.recipe, perceptual=perceptual, identity=identity,
                         pn_stats=_pn_if_needed(G, s.spaces, s.pn_samples), encoders=encoders, chunk=s.chunk,
                         seed=s.seed, compile=args.compile)
    if World.current().main:
        _print_table(out, "space_comparison", f"{out}/space_comparison.csv, .md, reconstructions.png", t)


def cmd_identity_curves(args: argparse.Namespace) -> None:
    s = IdentityCurvesSettings.from_args(args)
    perceptual, identity = _perceptual(args), _identity(args)
    encoders = _encoders(args, s.recipe, s.spaces)
    G = _generator(args)
    targets = _targets(args, G, s.n_targets)
    t = time.time()
    _announce(s.recipe, perceptual)
    summary = run_identity_curves(Path(args.out), G, targets, identity, s.spaces, n_directions=s.directions,
                                  direction_samples=s.direction_samples, recipe=s.recipe, perceptual=perceptual,
                                  encoders=encoders, chunk=s.chunk, seed=s.seed, edit_sizes=s.edit_sizes,
                                  pn_stats=_pn_if_needed(G, s.spaces, s.pn_samples), figure_index=s.index,
                                  compile=args.compile)
    if not World.current().main:
        return
    for row in summary:
        calibrated = (f"  calibrated at |alpha|=2: {row['identity_calibrated_at_2']:.3f}  verified: "
                      f"{row['verified_at_2']:.0%}" if "identity_calibrated_at_2" in row else "")
        change = f"  edit change at |alpha|=2: {row['edit_change_at_2']:.4f}" if "edit_change_at_2" in row else ""
        matched = "".join(f"  at edit size {size:g}: {row[f'identity_at_size_{size:g}']:.4f} (reached "
                          f"{row[f'reached_at_size_{size:g}']:.0%})" for size in s.edit_sizes
                          if f"identity_at_size_{size:g}" in row)
        print(f"{row['space']:8s} identity at |alpha|=2: {row.get('identity_at_2', float('nan')):.4f}  "
              f"mean over alphas: {row['identity_mean']:.4f}{calibrated}{change}{matched}")
    calibration = read_calibration(Path(args.out))
    if calibration is not None and summary:
        print(calibration.describe())
    if summary and (Path(args.out) / PER_IMAGE_CSV).is_file():
        write_tradeoff(Path(args.out))
    print(f"wrote {args.out}/identity_curves.csv, matched_edits.csv, identity_curves.png/.pdf, identity_summary.csv, "
          f"random_directions.png, tradeoff.png/.pdf ({time.time() - t:.0f} s)")


def cmd_f_layer_sweep(args: argparse.Namespace) -> None:
    s = FLayerSweepSettings.from_args(args)
    perceptual, identity = _perceptual(args), _identity(args)
    G = _generator(args)
    if s.layers is not None:
        unknown = [name for name in s.layers if name not in G.synthesis.feature_layers]
        if unknown:
            raise UsageError(f"--layers {','.join(unknown)}: not conv layers of this generator (choose from "
                             f"{','.join(G.synthesis.feature_layers)})")
    targets = _targets(args, G, s.n_targets)
    t = time.time()
    _announce(s.recipe.replace(init="mean"), perceptual)
    out = Path(args.out)
    summary = run_f_layer_sweep(out, G, targets, identity, s.recipe, perceptual, s.spaces, s.layers, s.directions,
                                s.direction_samples,
                                s.edit_sizes, s.seed)
    size = sorted(s.edit_sizes)[len(s.edit_sizes) // 2] if s.edit_sizes else None
    print("| space | layer | F share | MSE | identity | edit change, abs(alpha) = 2 | identity at edit size "
          f"{size if size is not None else '-'} |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in summary:
        matched = f"{r[f'identity_at_size_{size:g}']:.3f}" if size is not None else ""
        print(f"| {r['space']} | {r['layer']} | {100 * r['f_share']:.1f}% | {r['mse']:.4f} | {r['identity']:.3f} | "
              f"{r['edit_change_at_2']:.4f} | {matched} |")
    print(f"wrote {out}/f_layer_sweep.csv, f_layer_sweep_summary.csv, f_layer_sweep.png/.pdf ({time.time() - t:.0f} s)")


def cmd_score_identity(args: argparse.Namespace) -> None:
    s = ScoreIdentitySettings.from_args(args)
    out = Path(args.out)
    try:
        recorded = read_settings(out)
    except FileNotFoundError as e:
        raise UsageError(f"{e}: score-identity scores a folder written by compare") from None
    identity = _identity(args)
    G = _generator(args)
    n = len(recorded["targets"])
    targets = _targets(args, G, n)
    with hold_out_dir(out):  # fill_identity holds it too; the summary must be written under the same hold
        present = {r["space"] for r in read_rows(out / PER_IMAGE_CSV)}
        filled = fill_identity(out, G, targets, identity, pn_stats=_pn_if_needed(G, present, s.pn_samples))
        names = [name for name in SPACE_ORDER if name in present]
        summarize(out, names, n, folder_calibration(out, identity, targets), f_note=f_size_line(G, names))
    _print_table(out, "space_comparison", f"{out}/space_comparison_per_image.csv, space_comparison.csv, .md "
                                          f"({filled} images scored)")


def cmd_paired(args: argparse.Namespace) -> None:
    s = PairedSettings.from_args(args)
    out = Path(args.out)
    run_paired_statistics(out, s.a, s.b, abs_alpha=s.alpha, n_targets=s.n_targets)
    _print_table(out, "paired_statistics", f"{out}/paired_statistics.csv and .md")


def cmd_tradeoff(args: argparse.Namespace) -> None:
    for out in args.out:
        path = write_tradeoff(Path(out), args.distortion, args.alpha)
        print(f"wrote {path} and {path.with_suffix('.pdf').name}")


def cmd_align(args: argparse.Namespace) -> None:
    s = AlignSettings.from_args(args)
    aligner = FaceAligner(size=s.size, supersample=s.supersample, detector=s.detector, upsample=s.upsample,
                          min_score=s.min_score, refine=s.refine)
    out = Path(args.out)
    t = time.time()
    names, failures = align_photos(args.photos, out, aligner, keep_going=True, face=args.face)
    if not names:   # nothing was written: one error line, no claim of a file
        raise FaceNotFoundError(failures[0] if len(failures) == 1 else
                                f"none of the {len(args.photos)} photos gave a face: {'; '.join(failures)}")
    print(f"wrote {len(names)} aligned face{'s' if len(names) != 1 else ''} ({s.size} px) and {out}/alignment.json "
          f"({time.time() - t:.1f} s)")
    if failures:
        raise ValueError(f"{len(failures)} of {len(args.photos)} photos gave no face: {'; '.join(failures)}")


def cmd_invert(args: argparse.Namespace) -> None:
    s = InvertSettings.from_args(args)
    status(f"inverting into {s.space}: loading the loss, the encoder and the generator ...")
    perceptual = _perceptual(args) if s.recipe.lambda_per > 0 else None   # used only in the loss
    print(recipe_line(s.recipe, perceptual), flush=True)
    encoder = _encoders(args, s.recipe, [s.space]).get(s.space)
    G = _generator(args)
    out = Path(args.out)
    meta = {}
    if args.align:   # the photos' faces, aligned at the generator's resolution into OUT, are the targets
        aligner = FaceAligner(size=G.resolution)
        names, _ = align_photos(args.targets, out, aligner, face=args.face)
        args.targets = tuple(out / name for name in names)
        meta["alignment"] = "alignment.json"
    if args.targets not in (None, HELDOUT):
        meta["targets"] = [str(t) for t in args.targets]   # `edit --paste-back` finds each code's face by name
    targets = _targets(args, G, s.n_targets)
    meta["gray_targets"] = [bool(g) for g in is_gray_batch(targets)]   # `edit` shows their edits gray
    if any(meta["gray_targets"]):
        print(f"note: {sum(meta['gray_targets'])} target(s) are grayscale; the generator renders colour, so their "
              "reconstructions are in colour, and `edit` shows and pastes back their edits in gray")
    space = build_space(s.space, G, _pn_if_needed(G, [s.space], s.pn_samples))
    res = HybridInverter.from_recipe(space, s.recipe, perceptual, encoder).invert(targets, seed=s.seed)
    out.mkdir(parents=True, exist_ok=True)
    used = inversion_settings(G, s.recipe, perceptual, None, len(targets), s.seed)
    res.code.save(out / "codes.safetensors", space=s.space, generator_fingerprint=generator_fingerprint(G),
                  generator=str(args.generator), steps=s.recipe.steps, recipe=s.recipe.name,
                  inversion={k: v for k, v in used.items() if k not in ("generator", "identity", "chunk")}, **meta)
    per_image = (res.images - targets).square().flatten(1).mean(1)   # after the last step
    files = image_files(args.targets) if args.targets not in (None, HELDOUT) else []
    names = [f.name for f in files] if len(files) == len(targets) else [f"target {i}" for i in range(len(targets))]
    labelled_grid(out / "inversion.png", [to_uint8(torch.stack([t, r])) for t, r in zip(targets, res.images)],
                  names, ["target", f"{s.space}, {s.recipe.steps} steps"],
                  captions=[["", f"MSE {m:.4f}"] for m in per_image.tolist()], tile_inches=1.8,
                  title=f"inversion into {s.space} ({s.recipe.name} recipe)")
    mse = per_image.mean()
    print(f"{s.space}: final MSE {mse:.4f} after {s.recipe.steps} steps; wrote {out}/codes.safetensors, inversion.png")


def cmd_edit(args: argparse.Namespace) -> None:
    s = EditSettings.from_args(args)
    directions = load_directions(args.direction, kind=s.kind)
    if s.index >= len(directions):
        raise UsageError(f"--index {s.index}: {args.direction} holds {len(directions)} direction(s) (0 .. "
                         f"{len(directions) - 1})")
    d = directions[s.index]
    if args.kind is not None and d.kind != args.kind:  # a foreign file takes --kind; an own file says its kind
        raise UsageError(f"--kind {args.kind}: {args.direction} says its direction {s.index} is a {d.kind!r} "
                         "direction (--kind describes foreign .pt files)")
    saved = read_code_file(args.codes, args.device)
    if args.space is not None and saved.space and args.space != saved.space:
        raise UsageError(f"--space {args.space}: {args.codes} holds {saved.space} codes")
    transforms = None
    if args.paste_back:   # every code's face and photo found before the generator is loaded
        alignment = alignment_for(args.codes, args.alignment)
        transforms = code_transforms(saved.meta.get("targets"), args.codes, alignment)
        if len(transforms) != len(saved.code):
            raise UsageError(f"{args.codes} holds {len(saved.code)} codes but records {len(transforms)} targets")
    space_name = saved.space or s.space
    G = _generator(args)
    saved.check_generator(G)
    space = build_space(space_name, G, _pn_if_needed(G, [space_name], s.pn_samples))
    with torch.no_grad():
        rows = torch.stack([space.synthesize(space.edit(saved.code, d, a)) for a in s.alphas], dim=1)  # [N, A, 3, R, R]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = saved.meta.get("targets")
    names = [Path(t).name for t in targets] if isinstance(targets, list) and len(targets) == len(saved.code) and \
        all(isinstance(t, str) for t in targets) else [f"code {i}" for i in range(len(saved.code))]
    gray = saved.meta.get("gray_targets")
    gray = [bool(g) for g in gray] if isinstance(gray, list) and len(gray) == len(saved.code) else [False] * len(rows)
    shown = [to_gray(r) if g else r for r, g in zip(rows, gray)]   # a gray photo's edits are shown gray, as pasted
    labelled_grid(out / f"edit_{d.name}.png", [to_uint8(r) for r in shown],
                  [f"{n} (gray)" if g else n for n, g in zip(names, gray)], [f"alpha {a:+g}" for a in s.alphas],
                  tile_inches=1.6, title=f"{d.name} ({d.method}, {d.kind}) edited in {space_name}")
    print(f"wrote {out}/edit_{d.name}.png ({len(saved.code)} codes x alphas {list(s.alphas)})")
    if transforms is not None:
        written = paste_edits(out, transforms, rows.cpu(), s.alphas, d.name, s.mask)
        print(f"wrote {len(written)} photo{'s' if len(written) != 1 else ''} with the edits pasted back: "
              f"{', '.join(str(p) for p in written[:3])}{' ...' if len(written) > 3 else ''}")


def cmd_directions(args: argparse.Namespace) -> None:
    s = DirectionsSettings.from_args(args)
    G = _generator(args)
    if s.method in ("ganspace", "sefa") and s.count > G.w_dim:
        raise UsageError(f"--count {s.count}: {s.method} finds at most w_dim = {G.w_dim} directions of this generator")
    if s.method == "ganspace":
        dirs = ganspace(G, n_samples=s.samples, n_components=s.count, kind=s.kind, seed=s.seed, scale_by_std=True)
    elif s.method == "sefa":
        dirs = sefa(G, n_components=s.count)
    else:
        dirs = random_directions(s.count, G.z_dim if s.kind == "z" else G.w_dim, kind=s.kind, seed=s.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{s.method}_{'w' if s.method == 'sefa' else s.kind}.safetensors"
    save_directions(path, dirs)
    print(f"wrote {len(dirs)} {s.method} directions to {path}")


def _fitting(model: torch.nn.Module, spec: str, G: ls.Generator, base: Optional[torch.nn.Module] = None) -> None:
    """Refuse an encoder or head that does not fit G, in one line naming the file: it runs once on a gray face
    (a W+ encoder must predict [num_ws, w_dim], an F encoder G's f, a head must correct `base`'s codes)."""
    x = torch.zeros(1, 3, G.resolution, G.resolution, device=next(G.parameters()).device)
    try:
        with torch.no_grad():
            if base is not None:
                ws = base(x)
                model.bind(base).compensate(G, x, ws, G.synthesis(ws, noise_mode="const"))
            elif isinstance(model, FEncoder):
                model.init_code(build_space("FWPlus", G), x)
            else:
                ws = model(x)
                if tuple(ws.shape) != (1, G.num_ws, G.w_dim):
                    raise ValueError(f"it predicts W+ codes {tuple(ws.shape[1:])}, the generator takes "
                                     f"{(G.num_ws, G.w_dim)}")
    except (RuntimeError, ValueError, KeyError) as e:
        raise UsageError(f"{spec} does not fit the {G.resolution} px generator: {' '.join(str(e).split())[:200]}; "
                         "train one for it (docs/training.md)") from None


def _loaded(spec: Optional[str], G: ls.Generator, device: str, base: Optional[torch.nn.Module] = None):
    """The encoder or head `spec` (None: None), checked to fit G."""
    if spec is None:
        return None
    model = load_encoder(spec, device)
    _fitting(model, spec, G, base)
    return model


def cmd_app(args: argparse.Namespace) -> None:
    G = _generator(args)
    if args.components > G.w_dim:
        raise UsageError(f"--components {args.components}: GANSpace finds at most w_dim = {G.w_dim} directions of "
                         "this generator")
    shipped = args.generator == "default"   # the shipped encoders and heads are the default model's
    base = _loaded(args.wplus_encoder or ("default-wplus" if shipped else None), G, args.device)
    f_encoder = _loaded(args.f_encoder or ("default-f" if shipped else None), G, args.device)
    heads = {}
    for flag in COMPENSATION_HEADS:
        spec = getattr(args, flag) or (f"default-{flag}" if shipped and assets.installed(f"default-{flag}") else None)
        if spec is not None and base is None:
            raise UsageError(f"--{flag} corrects a W+ encoder's codes: pass --wplus-encoder FILE too")
        head = _loaded(spec, G, args.device, base)
        if head is not None:
            heads[type(head).__name__] = head
    loaded = {"f": f_encoder, "wplus": base}   # the paper recipe's starts, by the rule of `recipe_encoders`
    encoders: Dict[str, CodeInitializer] = {s: loaded[starting_encoder(s)] for s in SPACE_ORDER
                                            if loaded.get(starting_encoder(s)) is not None}
    status(f"finding the sliders' directions ({args.components} GANSpace components from {args.direction_samples:,} "
           "W samples, SeFa, random) ...")
    # the name the replay bundles' command uses: a shipped name as it is, a file by its absolute path
    name = args.generator if args.generator in assets.names("generator") else str(Path(args.generator).resolve())
    editor = Editor.for_generator(G, name, args.directions, components=args.components,
                                  samples=args.direction_samples, device=args.device, encoders=encoders,
                                  base_encoder=base, heads=heads)
    editor.warm_up()
    serve(editor, args.host, args.port, open_browser=args.open)


def cmd_compensation(args: argparse.Namespace) -> None:
    s = CompensationSettings.from_args(args)
    perceptual, identity = _perceptual(args), _identity(args)
    methods, heads = compensation_plan(args)
    models = {"base": load_encoder(args.base_encoder, args.device), "f": load_encoder(args.f_encoder, args.device),
              **{head: load_encoder(spec, args.device) for head, spec in heads.items()}}
    G = _generator(args)
    targets = _targets(args, G, s.n_targets)
    on = perceptual is not None
    settings = {
        "pti": dict(pivot_steps=s.pivot_steps, tune_steps=s.tune_steps, perceptual=perceptual,
                    lambda_per=1.0 if on else 0.0),
        "fzplus": fzplus_settings(s.recipe, perceptual),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = World.current()
    t = time.time()
    with hold_out_dir(out):  # the direction files are written into OUT too
        directions = world.main_first(lambda: edit_directions(G, out, s.directions, s.direction_samples, s.seed))
        run_compensation_comparison(out, G, targets, models, directions, settings, perceptual, identity,
                                    methods, edit_sizes=s.edit_sizes)
        if world.main:
            write_tradeoff(out)
    if world.main:
        _print_table(out, "compensation_comparison", f"{out}/compensation_comparison.csv, .md, compensation_grid.png, "
                                                     "tradeoff.png/.pdf", t)


__all__ = ["cmd_align", "cmd_app", "cmd_compare", "cmd_compensation", "cmd_directions", "cmd_edit",
           "cmd_identity_curves", "cmd_invert", "cmd_paired", "cmd_score_identity", "cmd_tradeoff"]
