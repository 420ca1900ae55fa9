"""The `latentspaces` command: one subcommand per module of this package.

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
    latentspaces app --open                                # the editor in the browser
    latentspaces train sdic --out runs/sdic                # train a network (stylegan2, f-encoder, ..., reganie)
    torchrun --standalone --nproc_per_node=4 -m experiments.cli compare --out runs/full --n-targets 64   # sharded

Also `python -m experiments.cli ...`. Everything runs offline on the embedded default model unless
--generator names a checkpoint. `--quick` (`--recipe quick`) settings finish both main experiments in minutes on a 2-core
CPU; `--recipe paper` (the default) is the recipe of "Revisiting Latent Space of GAN Inversion" on all 64
held-out targets, `--recipe full` this project's earlier full runs. A numeric flag left out
takes the preset's value; a value given is used as given, 0 included.

Each command is one module here: its config's fields make its flags (`experiments.config`), `check`
refuses flags that cannot work together, `run` does the work. Every flag is checked before any work
starts: alone when parsed, together right after. Errors are one line on stderr, `latentspaces <command>:
error: ...`: exit status 2 for a command line that cannot run (usage), 1 for a failure while running (a
broken file, missing weights, a diverged inversion), 130 for Ctrl-C. `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from types import ModuleType
from typing import Dict, Iterator, List, NoReturn, Optional

from latentspaces import __version__
from latentspaces.threads import use_threads

from ..argtypes import UsageError
from ..distributed import close_world, init_world
from ..reporting import describe_error, one_line
from . import (align, app, compare, compensation, directions, drag, drag_study, edit, f_layer_sweep, identity_curves,
               invert, paired, score_identity, tradeoff, train)
from .workers import check_compile, check_workers, run_as_ranks

# The commands, in the order `latentspaces --help` lists them.
COMMANDS: Dict[str, ModuleType] = {module.NAME: module for module in (
    compare, identity_curves, compensation, f_layer_sweep, score_identity, paired, tradeoff, drag_study, align, invert,
    edit, drag, directions, app, train)}


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


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="latentspaces", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="on an error, show the traceback")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                    help="print the version and exit")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        # --debug after the command too; SUPPRESS keeps the top-level value when absent
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
    """The checks of args.command, then the command: alone, as torchrun ranks, or in the trainer's own world."""
    command = COMMANDS[args.command]
    command.check(args)
    if command.RANKS == "trainer":   # the trainer sets its threads and joins the process group itself
        command.run(args)
        return
    launching = command.RANKS == "sharded" and check_workers(args.workers, args.device)   # the ranks choose their own
    if hasattr(args, "threads") and not launching:
        choice = use_threads(args.threads)
        if choice.note:
            print(f"latentspaces {args.command}: {choice.note}", file=sys.stderr, flush=True)
    if command.RANKS == "one":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            sharded = ", ".join(name for name, m in COMMANDS.items() if m.RANKS != "one")
            raise UsageError(f"`{args.command}` runs as one process; only {sharded} run as torchrun ranks")
        command.run(args)
        return
    check_compile(getattr(args, "compile", False), args.device)
    if launching:
        status = run_as_ranks(argv, args.workers)
        if status:
            raise SystemExit(status)   # the ranks have printed their own errors
        return
    world, args.device = init_world(args.device)
    try:
        command.run(args)
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


__all__ = ["COMMANDS", "Parser", "build_parser", "main"]
