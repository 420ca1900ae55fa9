"""`latentspaces edit`: edit inverted codes along a direction; with --paste-back, the photos with their edited faces.

    latentspaces edit --codes runs/me/codes.safetensors --direction runs/dirs/ganspace_z.safetensors --out runs/me
    latentspaces edit --codes runs/me/codes.safetensors --direction runs/dirs/ganspace_z.safetensors --paste-back \\
        --out runs/me                                      # runs/me/photo_ganspace_0_+2.png: the whole photo, edited
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch

from latentspaces.directions import load_directions
from latentspaces.images import to_gray, to_uint8
from latentspaces.spaces import build_space, read_code_file

from ..argtypes import UsageError, alpha_list, existing_file, non_negative_int, space_name
from ..config import Config, add_config_flags, option
from ..figures import labelled_grid
from ..photos import alignment_for, code_transforms, paste_edits
from ..studies.presets import PN_SAMPLES
from .common import add_machine_flags, load_generator, pn_stats_for

NAME = "edit"
HELP = "edit inverted codes along a direction"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class EditConfig(Config):
    """Codes along one direction."""

    space: str = option("FZPlus", "space of the codes when their file does not say", type=space_name)
    index: int = option(0, "which direction of the file", type=non_negative_int)
    kind: Optional[str] = option(None, "kind of a foreign direction file (.pt); latentspaces files say their own",
                                 choices=("z", "w"), default_text="the file's")
    alphas: Tuple[float, ...] = option((-2.0, -1.0, 0.0, 1.0, 2.0), "comma-separated finite numbers; write "
                                       "--alphas=-2,0,2 (the = keeps argparse from reading -2 as an option)",
                                       type=alpha_list)
    pn_samples: int = PN_SAMPLES["quick"]   # W samples of P_N's statistics (the cached quick fit)
    mask: str = option("face", "--paste-back blend: the face (landmark hull and forehead) or the whole aligned "
                               "square", choices=("face", "square"))


CONFIG = EditConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_flags(p)
    p.add_argument("--codes", required=True, type=existing_file,
                   help="codes.safetensors written by `invert` (or a compare chunk file)")
    p.add_argument("--direction", required=True, type=existing_file,
                   help="direction file (latentspaces .safetensors or e4e .pt)")
    add_config_flags(p, EditConfig)
    p.add_argument("--paste-back", action="store_true",
                   help="also write each photo with its edited faces pasted back, OUT/<photo stem>_<direction>_"
                        "<alpha>.png (codes of aligned photos: `align` then `invert`, or `invert --align`)")
    p.add_argument("--alignment", type=existing_file, default=None,
                   help="the alignment file of the codes' faces (--paste-back; default alignment.json beside --codes)")


def check(args: argparse.Namespace) -> None:
    """--alignment and --mask serve --paste-back, which needs an alignment file."""
    if not args.paste_back:
        given = [flag for flag, value in (("--alignment", args.alignment), ("--mask", args.mask)) if value is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'matters' if len(given) == 1 else 'matter'} only with "
                             "--paste-back")
        return
    alignment_for(args.codes, args.alignment)


def run(args: argparse.Namespace) -> None:
    c = EditConfig.from_args(args)
    directions = load_directions(args.direction, kind=c.kind)
    if c.index >= len(directions):
        raise UsageError(f"--index {c.index}: {args.direction} holds {len(directions)} direction(s) (0 .. "
                         f"{len(directions) - 1})")
    d = directions[c.index]
    if args.kind is not None and d.kind != args.kind:  # a foreign file takes --kind; an own file says its kind
        raise UsageError(f"--kind {args.kind}: {args.direction} says its direction {c.index} is a {d.kind!r} "
                         "direction (--kind describes foreign .pt files)")
    saved = read_code_file(args.codes, args.device)
    if args.space is not None and saved.space and args.space != saved.space:
        raise UsageError(f"--space {args.space}: {args.codes} holds {saved.space} codes")
    transforms = None
    if args.paste_back:   # every code's face and photo found before the generator is loaded
        transforms = code_transforms(saved.meta.get("targets"), args.codes, alignment_for(args.codes, args.alignment))
        if len(transforms) != len(saved.code):
            raise UsageError(f"{args.codes} holds {len(saved.code)} codes but records {len(transforms)} targets")
    space_name = saved.space or c.space
    G = load_generator(args)
    saved.check_generator(G)
    space = build_space(space_name, G, pn_stats_for(G, [space_name], c.pn_samples), **saved.space_options)
    with torch.no_grad():
        rows = torch.stack([space.synthesize(space.edit(saved.code, d, a)) for a in c.alphas], dim=1)  # [N, A, 3, R, R]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = saved.meta.get("targets")
    names = [Path(t).name for t in targets] if isinstance(targets, list) and len(targets) == len(saved.code) and \
        all(isinstance(t, str) for t in targets) else [f"code {i}" for i in range(len(saved.code))]
    gray = saved.meta.get("gray_targets")
    gray = [bool(g) for g in gray] if isinstance(gray, list) and len(gray) == len(saved.code) else [False] * len(rows)
    shown = [to_gray(r) if g else r for r, g in zip(rows, gray)]   # a gray photo's edits are shown gray, as pasted
    labelled_grid(out / f"edit_{d.name}.png", [to_uint8(r) for r in shown],
                  [f"{n} (gray)" if g else n for n, g in zip(names, gray)], [f"alpha {a:+g}" for a in c.alphas],
                  tile_inches=1.6, title=f"{d.name} ({d.method}, {d.kind}) edited in {space_name}")
    print(f"wrote {out}/edit_{d.name}.png ({len(saved.code)} codes x alphas {list(c.alphas)})")
    if transforms is not None:
        written = paste_edits(out, transforms, rows.cpu(), c.alphas, d.name, c.mask)
        print(f"wrote {len(written)} photo{'s' if len(written) != 1 else ''} with the edits pasted back: "
              f"{', '.join(str(p) for p in written[:3])}{' ...' if len(written) > 3 else ''}")
