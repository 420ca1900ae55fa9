"""`latentspaces f-layer-sweep`: F/Z+ and F/W+ with f at each early layer: reconstruction, edit size and identity
against F's share of the image (f_layer_sweep.png).

    latentspaces f-layer-sweep --quick --out runs/sweep    # f at b4.conv1 .. b16.conv0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from latentspaces.spaces import is_f_space

from ..argtypes import UsageError
from ..config import RECIPE_WITHOUT_INIT
from ..studies.f_layer_sweep import FLayerSweepConfig, run_f_layer_sweep
from .common import (add_inversion_flags, announce, check_inversion, check_measures_identity, load_generator,
                     load_identity, load_perceptual, load_targets)

NAME = "f-layer-sweep"
HELP = ("F/Z+ and F/W+ with f at each early layer: reconstruction, edit size and identity against F's share of the "
        "image (f_layer_sweep.png)")
RANKS = "one"       # one process; refused under torchrun
CONFIG = FLayerSweepConfig     # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inversion_flags(p, FLayerSweepConfig, RECIPE_WITHOUT_INIT, encoders=False, workers=False)


def check(args: argparse.Namespace) -> None:
    """The inversion flags; only F spaces; the identity it measures."""
    check_inversion(args, FLayerSweepConfig.from_args(args).recipe)
    check_measures_identity(args)
    others = [name for name in (args.spaces or ()) if not is_f_space(name)]
    if others:
        raise UsageError(f"--spaces {','.join(others)}: the sweep moves the F layer, so it takes F spaces only "
                         "(FZPlus, FWPlus, FZ, FWPlusPN)")


def run(args: argparse.Namespace) -> None:
    c = FLayerSweepConfig.from_args(args)
    perceptual, identity = load_perceptual(args, c.recipe), load_identity(args)
    G = load_generator(args)
    if c.layers is not None:
        unknown = [name for name in c.layers if name not in G.synthesis.feature_layers]
        if unknown:
            raise UsageError(f"--layers {','.join(unknown)}: not conv layers of this generator (choose from "
                             f"{','.join(G.synthesis.feature_layers)})")
    targets = load_targets(args, G, c.n_targets)
    t = time.time()
    announce(c.recipe.replace(init="mean"), perceptual)
    out = Path(args.out)
    summary = run_f_layer_sweep(out, G, targets, identity, c, perceptual)
    size = sorted(c.edit_sizes)[len(c.edit_sizes) // 2] if c.edit_sizes else None
    print("| space | layer | F share | MSE | identity | edit change, abs(alpha) = 2 | identity at edit size "
          f"{size if size is not None else '-'} |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in summary:
        matched = f"{r[f'identity_at_size_{size:g}']:.3f}" if size is not None else ""
        print(f"| {r['space']} | {r['layer']} | {100 * r['f_share']:.1f}% | {r['mse']:.4f} | {r['identity']:.3f} | "
              f"{r['edit_change_at_2']:.4f} | {matched} |")
    print(f"wrote {out}/f_layer_sweep.csv, f_layer_sweep_summary.csv, f_layer_sweep.png/.pdf ({time.time() - t:.0f} s)")
