"""The `latentspaces` command: compare, identity-curves, compensation, f-layer-sweep, paired, score-identity, tradeoff,
align, invert, edit, directions.

    latentspaces compare --quick --out runs/quick          # Table 1 style comparison on the default model
    latentspaces identity-curves --quick --out runs/quick  # Fig. 6 style identity-vs-step curves
    latentspaces compensation --quick --out runs/comp      # base W+ encoder vs SDIC vs PTI vs F/Z+
    latentspaces compare --recipe paper --out runs/paper   # the paper's recipe (the default): encoder start, 10/10
    latentspaces f-layer-sweep --quick --out runs/sweep    # F/Z+, F/W+ with f at b4.conv1 .. b16.conv0
    latentspaces paired --out runs/quick --a FZPlus        # wins and Wilcoxon p of F/Z+ against each space
    latentspaces score-identity --out runs/gpu             # identity of a compare run made with --identity none
    latentspaces invert --space FZPlus --targets face.png --out runs/me
    latentspaces directions --method ganspace --kind z --out runs/dirs
    latentspaces edit --space FZPlus --codes runs/me/codes.safetensors --direction runs/dirs/ganspace_z.safetensors --out runs/me
    latentspaces align photo.jpg --size 256 --out runs/me  # FFHQ alignment: runs/me/photo_0.png, alignment.json
    latentspaces invert --align --targets photo.jpg --out runs/me   # align on the fly, then invert every face
    latentspaces edit --codes runs/me/codes.safetensors --direction runs/dirs/ganspace_z.safetensors --paste-back \\
        --out runs/me                                      # runs/me/photo_ganspace_0_+2.png: the whole photo, edited
    torchrun --standalone --nproc_per_node=4 -m experiments.cli compare --out runs/full --n-targets 64   # sharded

Also `python -m experiments.cli ...`. Everything runs offline on the embedded default model unless
--generator names a checkpoint. `--quick` (`--recipe quick`) settings finish both main experiments in minutes on a 2-core
CPU; `--recipe paper` (the default) is the recipe of "Revisiting Latent Space of GAN Inversion" on all 64
held-out targets, `--recipe full` this project's earlier full runs. A numeric flag left out
takes the preset's value; a value given is used as given, 0 included.

Every flag is checked before any work starts: alone when parsed, together
right after. Errors are one line on stderr, `latentspaces <command>: error:
...`: exit status 2 for a command line that cannot run (usage), 1 for a failure while running (a
broken file, missing weights, a diverged inversion), 130 for Ctrl-C. `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from typing import Iterator, List, NoReturn, Optional

import torch

from latentspaces import __version__
from latentspaces.threads import use_threads
from latentspaces.metrics.identity import DEFAULT_IDENTITY, IDENTITY_CHOICES
from latentspaces.metrics.perceptual import DEFAULT_PERCEPTUAL, PERCEPTUAL_CHOICES
from encoders import COMPENSATION_HEADS
from optimizers import FULL, PAPER, QUICK
from optimizers.recipes import DEFAULT_RECIPE, INITS, RECIPES

from ..argtypes import (UsageError, alpha_list, device_name, edit_sizes, encoder_spec, layer_list, existing_dir,
                        existing_file, finite_float, generator_spec, int_in, learning_rate, name_list,
                        non_negative_float, non_negative_int, out_dir, photo_files, positive_float, positive_int,
                        sample_count, seed, space_list, space_name, step_count, target_spec)
from ..distributed import close_world, init_world
from ..reporting import describe_error, one_line
from .workers import check_compile, check_workers, run_as_ranks
from .checks import (check_align, check_app, check_compare, check_compensation, check_directions, check_edit,
                     check_f_layer_sweep, check_identity_curves, check_invert, check_nothing, check_paired)
from .commands import (cmd_align, cmd_app, cmd_compare, cmd_compensation, cmd_directions, cmd_edit, cmd_f_layer_sweep,
                       cmd_identity_curves, cmd_invert, cmd_paired, cmd_score_identity, cmd_tradeoff)
from ..studies.compensation import METHODS
from ..studies.matched_edits import EDIT_SIZES
from .settings import (RECIPE_FLAGS, AlignSettings, CompareSettings, CompensationSettings, FLayerSweepSettings,
                       IdentityCurvesSettings, InvertSettings)

SHARDED = ("compare", "identity-curves", "compensation")   # the commands that shard over torchrun ranks
DEFAULT_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `latentspaces compare: error: argument --steps: ...`, exit status 2."""

    def error(self, message: str, prog: Optional[str] = None) -> NoReturn:
        prog = prog or self.prog
        if "expected one argument" in message and "--alphas" in message:   # argparse read -2,0,2 as an option
            message += "; a list that starts with a minus sign goes after '=': --alphas=-2,0,2"
        self.exit(2, f"{prog}: error: {one_line(message)} (see {prog} --help)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but an unknown flag is reported by the command it was given to."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            self.error(f"unrecognized arguments: {' '.join(extras)}", f"{self.prog} {command}" if command else None)
        return parsed


def _by_recipe(field: str, cls: type) -> str:
    """'(quick Q, full F, paper P)' for a help text: a settings field or a recipe field of each preset."""
    def value(preset) -> object:
        return getattr(preset.recipe, field) if field in RECIPE_FLAGS else getattr(preset, field)

    return "(" + ", ".join(f"{name} {value(preset):g}" for name, preset in cls.PRESETS.items()) + ")"


def _face(p: argparse.ArgumentParser, scope: str = "") -> None:
    p.add_argument("--face", type=non_negative_int, default=None,
                   help=f"only face K of each photo{scope} (0 the most confident; the printout lists each photo's faces "
                        "and the candidates dropped as not faces)")


def _machine(p: argparse.ArgumentParser, out_help: str = "output folder", out_type=out_dir) -> None:
    p.add_argument("--out", required=True, type=out_type, help=out_help)
    p.add_argument("--generator", default="default", type=generator_spec,
                   help="'default' or a checkpoint path (.pt, .pkl, .safetensors)")
    p.add_argument("--device", default=DEFAULT_DEVICE, type=device_name, help="cpu, cuda, cuda:N or mps")
    _threads(p)


def _threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int_in(1, 1024), default=None,
                   help="compute threads of this process (default: OMP_NUM_THREADS if set, else the usable CPUs "
                        "less the machine's load, split over local ranks; latentspaces.threads)")


def _inversion(p: argparse.ArgumentParser, cls: type, quick: bool = True, identity: bool = True,
               encoders: bool = True) -> None:
    """The flags of the commands that invert targets; numbers default to None (the preset's)."""
    _machine(p)
    p.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                   help=f"inversion recipe and its presets (default {DEFAULT_RECIPE}): " + "; ".join(
                       RECIPES[name].describe() for name in RECIPES))
    if quick:
        p.add_argument("--quick", action="store_true", help="the same as --recipe quick: minutes on a CPU, 8 targets")
    p.add_argument("--targets", type=target_spec, default=None,
                   help="'heldout' (default) or comma-separated image files/folders")
    # --n-targets, not only --n: torchrun's parser takes --n for an abbreviation of its own --nnodes
    p.add_argument("--n-targets", "--n", dest="n_targets", type=positive_int, default=None,
                   help=f"number of held-out targets {_by_recipe('n_targets', cls)}")
    p.add_argument("--steps", type=step_count, default=None,
                   help=f"optimizer steps; 0 keeps the start {_by_recipe('steps', cls)}")
    p.add_argument("--lr", type=learning_rate, default=None, help=f"learning rate {_by_recipe('lr', cls)}")
    p.add_argument("--lambda-per", type=non_negative_float, default=None,
                   help=f"perceptual weight in the loss {_by_recipe('lambda_per', cls)}")
    p.add_argument("--lambda-reg", type=non_negative_float, default=None,
                   help=f"weight of mean((f - f0)^2) on an encoder-started F space {_by_recipe('lambda_reg', cls)}")
    p.add_argument("--perceptual", default=None, choices=PERCEPTUAL_CHOICES,
                   help=f"perceptual distance (default {DEFAULT_PERCEPTUAL}: LPIPS-VGG when its backbone is on this "
                        "machine, else D-features, the default model's)")
    if identity:
        p.add_argument("--identity", default=DEFAULT_IDENTITY, choices=IDENTITY_CHOICES,
                       help=f"face-identity similarity scored per image (default {DEFAULT_IDENTITY}: dlib's ResNet "
                            "embedding, calibrated on the targets; 'none' skips it, `score-identity` fills it later)")
    if encoders:
        p.add_argument("--init", choices=list(INITS), default=None,
                       help="start: 'encoder' (F spaces from the F encoder; W+, W, S, P_N from the W+ encoder; Z and "
                            "Z+ from their mean), 'mean' (w_avg and its counterparts) or 'random' (one code of each "
                            "space's prior drawn with --seed, the same for every target) "
                            f"(quick {QUICK.init}, full {FULL.init}, paper {PAPER.init})")
        p.add_argument("--f-encoder", type=encoder_spec, default=None,
                       help="F encoder name or file (init encoder; default default-f)")
        p.add_argument("--wplus-encoder", type=encoder_spec, default=None,
                       help="W+ encoder name or file (init encoder; default default-wplus)")


def _edit_sizes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--edit-sizes", type=edit_sizes, default=None,
                   help="edit sizes (mean absolute pixel change) at which identity is compared across spaces and methods, "
                        f"each edit's alpha searched for (default {','.join(f'{s:g}' for s in EDIT_SIZES)}; 'none': skip)")


def _seed(p: argparse.ArgumentParser, help: str = "random seed, 0 .. 2^32 - 1 (default 0)") -> None:
    p.add_argument("--seed", type=seed, default=None, help=help)


def _workers(p: argparse.ArgumentParser, compile: bool = True) -> None:
    p.add_argument("--workers", type=positive_int, default=1,
                   help="local processes sharing the jobs (torchrun ranks with cores/N threads each; default 1); "
                        "2 on a 2-core CPU did 1.22x the work of 1 (BENCHMARKS.md; measured before the layers' speed-ups)")
    if compile:
        p.add_argument("--compile", action="store_true",
                       help="torch.compile each inversion step (equal to float rounding; no faster on the 2-core CPU "
                            "measured, BENCHMARKS.md; try it on a GPU)")


def _chunk(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--chunk", type=positive_int, default=None,
                   help=f"{help} (default 8; 16 ran 1.07x faster under --workers 2 on a 2-core CPU, BENCHMARKS.md)")
    p.add_argument("--spaces", type=space_list, default=None, help="comma-separated space names")


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="latentspaces", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="on an error, show the traceback")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                    help="print the version and exit")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="invert targets into every space; table + grid")
    _inversion(p, CompareSettings)
    _seed(p, "the start of --init random, 0 .. 2^32 - 1 (default 0; nothing else in compare is random)")
    _chunk(p, "images inverted together (results saved per chunk)")
    _workers(p)
    p.set_defaults(fn=cmd_compare, check=check_compare)

    p = sub.add_parser("identity-curves", help="identity vs edit step per space; curves + robustness grid")
    _inversion(p, IdentityCurvesSettings)
    _seed(p)
    _chunk(p, "images inverted together (as in compare; shared codes)")
    _workers(p)
    _edit_sizes(p)
    p.add_argument("--index", type=non_negative_int, default=None,
                   help="target shown in random_directions.png (default: the one closest to the set's median "
                        "brightness and reconstruction error)")
    p.set_defaults(fn=cmd_identity_curves, check=check_identity_curves)

    p = sub.add_parser("compensation", help="base W+ encoder vs the compensation heads vs PTI vs F/Z+ (SDIC's Table 2)")
    _inversion(p, CompensationSettings, encoders=False)
    _seed(p)
    p.add_argument("--base-encoder", type=encoder_spec, default="default-wplus", help="W+ encoder name or file")
    for head in COMPENSATION_HEADS:
        p.add_argument(f"--{head}", type=encoder_spec, default=None,
                       help=f"{head} head name or file (default: default-{head} when it is installed)")
    p.add_argument("--methods", type=name_list(tuple(METHODS), "method"), default=None,
                   help=f"methods to run, comma-separated from {','.join(METHODS)} (default: base, every head "
                        "given or installed, pti, fzplus)")
    p.add_argument("--f-encoder", type=encoder_spec, default="default-f", help="F encoder name or file")
    p.add_argument("--pivot-steps", type=step_count, default=None,
                   help=f"PTI pivot steps {_by_recipe('pivot_steps', CompensationSettings)}")
    p.add_argument("--tune-steps", type=step_count, default=None,
                   help=f"PTI tuning steps {_by_recipe('tune_steps', CompensationSettings)}")
    _edit_sizes(p)
    _workers(p, compile=False)
    p.set_defaults(fn=cmd_compensation, check=check_compensation)

    p = sub.add_parser("f-layer-sweep", help="F/Z+ and F/W+ with f at each early layer: reconstruction, edit size and "
                                             "identity against F's share of the image (f_layer_sweep.png)")
    _inversion(p, FLayerSweepSettings, quick=True, encoders=False)
    p.add_argument("--layers", type=layer_list, default=None,
                   help="comma-separated conv layers (default b4.conv1 .. b16.conv0)")
    p.add_argument("--spaces", type=space_list, default=None, help="F spaces (default FZPlus,FWPlus)")
    p.add_argument("--directions", type=positive_int, default=None,
                   help=f"GANSpace directions per kind {_by_recipe('directions', FLayerSweepSettings)}")
    _edit_sizes(p)
    _seed(p, "GANSpace sampling, 0 .. 2^32 - 1 (default 0)")
    p.set_defaults(fn=cmd_f_layer_sweep, check=check_f_layer_sweep)

    p = sub.add_parser("score-identity", help="fill in the identity of a compare folder inverted with --identity none")
    _machine(p, "a folder written by compare", existing_dir)
    p.add_argument("--targets", type=target_spec, default=None,
                   help="the targets the folder was inverted with (as in compare)")
    p.add_argument("--identity", default=DEFAULT_IDENTITY, choices=[c for c in IDENTITY_CHOICES if c != "none"],
                   help=f"face-identity similarity to fill in (default {DEFAULT_IDENTITY})")
    p.add_argument("--quick", action="store_true",
                   help="the folder was made with --quick (P_N statistics of 100k samples)")
    p.set_defaults(fn=cmd_score_identity, check=check_nothing)

    p = sub.add_parser("paired", help="paired tests of one space against others on the rows already in --out")
    p.add_argument("--out", required=True, type=existing_dir, help="a folder written by compare and/or identity-curves")
    p.add_argument("--a", type=space_name, default=None, help="the space compared against the others (default FZPlus)")
    p.add_argument("--b", type=space_list, default=None,
                   help="comma-separated spaces (default: every other space in --out)")
    p.add_argument("--alpha", type=non_negative_float, default=None,
                   help="|alpha| of the edits compared (identity curves; default 2)")
    p.add_argument("--n-targets", "--n", dest="n_targets", type=positive_int, default=None,
                   help="use targets 0 .. n-1 only (default: all)")
    p.set_defaults(fn=cmd_paired, check=check_paired, quick=False)

    p = sub.add_parser("tradeoff", help="distortion vs editability figure (tradeoff.png/.pdf) from the rows in folders")
    p.add_argument("--out", required=True, type=existing_dir, nargs="+",
                   help="folders written by compare + identity-curves, or by compensation; one figure in each")
    p.add_argument("--distortion", choices=["mse", "perceptual"], default="mse", help="the distortion axis")
    p.add_argument("--alpha", type=positive_float, default=2.0,
                   help="|alpha| of the edits whose identity is the editability axis (identity curves; default 2)")
    p.set_defaults(fn=cmd_tradeoff, check=check_nothing, quick=False)

    p = sub.add_parser("align", help="find the faces of photos and align them as FFHQ was made")
    a = AlignSettings()
    p.add_argument("photos", nargs="+", type=photo_files, metavar="PHOTO",
                   help="photo files or folders of them; each face is written as OUT/<photo stem>_<face>.png, face 0 "
                        "the most confident, and its transform back to the photo to OUT/alignment.json (with every "
                        "candidate the detector reported and why it was kept or dropped)")
    p.add_argument("--out", required=True, type=out_dir, help="output folder")
    p.add_argument("--size", type=int_in(8, 4096), default=None, help=f"side of the aligned images, px (default "
                                                                      f"{a.size}, FFHQ's; the default model is 64)")
    p.add_argument("--supersample", type=int_in(1, 8), default=None,
                   help=f"the square is resampled at size x this first, then reduced (default {a.supersample}, FFHQ's)")
    p.add_argument("--detector", choices=["hog", "cnn"], default=None,
                   help="dlib's HOG detector (default) or its CNN detector (slower; better on turned and small faces)")
    p.add_argument("--upsample", type=int_in(0, 3), default=None,
                   help=f"times the detector doubles the photo; each finds faces half as large (default {a.upsample})")
    p.add_argument("--min-score", type=finite_float, default=None,
                   help=f"detections scoring below this are dropped unexamined (default {a.min_score:g}; dlib's own "
                        "threshold is 0); the rest must pass the landmark check to count as faces")
    _face(p)
    p.add_argument("--no-refine", dest="refine", action="store_const", const=False, default=None,
                   help="one landmark pass only (default: a second pass on the aligned face, steadier landmarks)")
    p.set_defaults(fn=cmd_align, check=check_align, quick=False)

    p = sub.add_parser("invert", help="invert images into one space")
    _inversion(p, InvertSettings, quick=False, identity=False)
    _seed(p, "the start of --init random, 0 .. 2^32 - 1 (default 0)")
    p.add_argument("--space", type=space_name, default=None, help="default FZPlus")
    p.add_argument("--align", action="store_true",
                   help="--targets are photos: align every face (as `latentspaces align` at the generator's "
                        "resolution, into --out) and invert the faces; `edit --paste-back` then finds them")
    _face(p, " (with --align)")
    p.set_defaults(fn=cmd_invert, check=check_invert, quick=False)

    p = sub.add_parser("edit", help="edit inverted codes along a direction")
    _machine(p)
    p.add_argument("--codes", required=True, type=existing_file,
                   help="codes.safetensors written by `invert` (or a compare chunk file)")
    p.add_argument("--direction", required=True, type=existing_file,
                   help="direction file (latentspaces .safetensors or e4e .pt)")
    _edit_sizes(p)
    p.add_argument("--index", type=non_negative_int, default=None, help="which direction of the file (default 0)")
    p.add_argument("--kind", choices=["z", "w"], default=None,
                   help="kind of a foreign direction file (.pt); latentspaces files say their own")
    p.add_argument("--space", type=space_name, default=None,
                   help="space of the codes when the file does not say (default FZPlus)")
    p.add_argument("--alphas", type=alpha_list, default=None,
                   help="comma-separated (default -2,-1,0,1,2); write --alphas=-2,0,2 (the = keeps argparse from "
                        "reading -2 as an option); finite numbers")
    p.add_argument("--paste-back", action="store_true",
                   help="also write each photo with its edited faces pasted back, OUT/<photo stem>_<direction>_"
                        "<alpha>.png (codes of aligned photos: `align` then `invert`, or `invert --align`)")
    p.add_argument("--alignment", type=existing_file, default=None,
                   help="the alignment file of the codes' faces (--paste-back; default alignment.json beside --codes)")
    p.add_argument("--mask", choices=["face", "square"], default=None,
                   help="--paste-back blend: the face (landmark hull and forehead, default) or the whole aligned "
                        "square")
    p.set_defaults(fn=cmd_edit, check=check_edit, quick=False)

    p = sub.add_parser("app", help="the editor in the browser: photo -> faces -> inversion -> sliders -> edited photo")
    p.add_argument("--generator", default="default", type=generator_spec,
                   help="'default' or a checkpoint path (.pt, .pkl, .safetensors)")
    p.add_argument("--device", default=DEFAULT_DEVICE, type=device_name, help="cpu, cuda, cuda:N or mps")
    _threads(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int_in(0, 65535), default=7860, help="port (default 7860; 0: any free port)")
    p.add_argument("--open", action="store_true", help="open the page in this machine's browser")
    p.add_argument("--directions", type=existing_file, nargs="+", default=(),
                   help="direction files to add as sliders (e.g. InterfaceGAN's; latentspaces .safetensors or "
                        "e4e .pt)")
    p.add_argument("--components", type=int_in(1, 50), default=5, help="GANSpace components shown (default 5)")
    p.add_argument("--direction-samples", type=sample_count, default=20_000,
                   help="W samples of the sliders' GANSpace PCA (default 20000)")
    p.add_argument("--wplus-encoder", type=encoder_spec, default=None,
                   help="W+ encoder name or file: the paper recipe's start and the heads' base (default with the "
                        "default generator: default-wplus)")
    p.add_argument("--f-encoder", type=encoder_spec, default=None,
                   help="F encoder name or file: the paper recipe's start of F spaces (default with the default "
                        "generator: default-f)")
    for head in COMPENSATION_HEADS:
        p.add_argument(f"--{head}", type=encoder_spec, default=None,
                       help=f"{head} head name or file (default with the default generator: default-{head})")
    p.set_defaults(fn=cmd_app, check=check_app, quick=False)

    p = sub.add_parser("directions", help="find directions (GANSpace, SeFa, random) and save them")
    _machine(p)
    p.add_argument("--method", choices=["ganspace", "sefa", "random"], default=None, help="default ganspace")
    p.add_argument("--kind", choices=["z", "w"], default=None, help="default w")
    p.add_argument("--count", type=positive_int, default=None, help="default 10")
    p.add_argument("--samples", type=sample_count, default=None, help="W samples for GANSpace (default 100000)")
    _seed(p)
    p.set_defaults(fn=cmd_directions, check=check_directions, quick=False)

    for p in sub.choices.values():  # --debug after the command too; SUPPRESS keeps the top-level value when absent
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="on an error, show the traceback")
    return ap


def _fail(prog: str, message: str, status: int) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


@contextlib.contextmanager
def _one_line_warnings(prog: str) -> Iterator[None]:
    """Warnings as `latentspaces <command>: warning: ...`, one line each (not file:line and the source line)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _run(args: argparse.Namespace, argv: List[str]) -> None:
    """The checks of args.command, then the command (sharded commands inside the torchrun world)."""
    args.check(args)
    launching = args.command in SHARDED and check_workers(args.workers, args.device)   # the ranks choose their own
    if hasattr(args, "threads") and not launching:
        choice = use_threads(args.threads)
        if choice.note:
            print(f"latentspaces {args.command}: {choice.note}", file=sys.stderr, flush=True)
    if args.command not in SHARDED:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError(f"`{args.command}` runs as one process; only {', '.join(SHARDED)} shard over torchrun "
                             "ranks")
        args.fn(args)
        return
    check_compile(getattr(args, "compile", False), args.device)
    if check_workers(args.workers, args.device):
        status = run_as_ranks(argv, args.workers)
        if status:
            raise SystemExit(status)   # the ranks have printed their own errors
        return
    world, args.device = init_world(args.device)
    try:
        args.fn(args)
    except BaseException:
        if world.size > 1:
            close_world(wait=False)   # the other ranks may never reach a barrier
        raise
    if world.size > 1:
        close_world()


def main(argv: Optional[List[str]] = None) -> None:
    """Run one command (argv: the arguments after `latentspaces`; the process's own when None).

    Errors end the process through SystemExit after one line on stderr: status 2 for usage (argparse's
    own errors and `UsageError`), 1 for a failure while running, 130 for Ctrl-C. With --debug the
    exception propagates instead, traceback and all.
    """
    args = build_parser().parse_args(argv)
    prog = f"latentspaces {args.command}"
    with _one_line_warnings(prog):
        try:
            _run(args, sys.argv[1:] if argv is None else list(argv))
        except UsageError as e:
            if args.debug:
                raise
            _fail(prog, f"{one_line(e)} (see {prog} --help)", 2)
        except KeyboardInterrupt:
            if args.debug:
                raise
            _fail(prog, "interrupted", 130)
        except Exception as e:
            if args.debug:
                raise
            _fail(prog, describe_error(e), 1)


__all__ = ["Parser", "build_parser", "main"]
