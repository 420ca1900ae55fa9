"""`latentspaces drag`: drag points of an inverted face (DragGAN, `latentspaces.drag`); with --paste-back, the photo.

    latentspaces invert --align --targets me.jpg --space WPlus --out runs/me
    latentspaces drag --codes runs/me/codes.safetensors --drag 30,40:30,46 --paste-back --out runs/me/drag
    latentspaces drag --photo me.jpg --space WPlus --drag 30,40:30,46 --paste-back --out runs/me_drag  # in one go
    latentspaces drag --seed 3 --space FZPlus --drag 30,40:30,46 --drag 34,40:34,46 --out runs/drag   # a sample

Points are x,y pixels of the generator's R x R image (x right, y down); each --drag is HANDLE:TARGET, or
--points FILE gives a JSON list of [[hx, hy], [tx, ty]] pairs. --mask PNG (R x R, white where the image may
change) keeps the rest. Writes OUT/drag.png (start with handles and targets, the result with the tracked
handles), OUT/drag_points.csv (every step's tracked points and distances), OUT/codes.safetensors (the
dragged code; `latentspaces edit` and `drag` read it) and with --paste-back OUT/<photo stem>_drag.png.
A replay bundle from the editor (its settings.json names the pairs) replays with --points.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from latentspaces.align import FaceAligner
from latentspaces.drag import MAX_DRAG_STEPS, DragSettings, check_points, drag
from latentspaces.images import load_images
from latentspaces.fingerprints import generator_fingerprint
from latentspaces.images import to_uint8
from latentspaces.spaces import build_space, read_code_file
from optimizers import QUICK, HybridInverter

from ..argtypes import UsageError, existing_file, int_in, non_negative_float, non_negative_int, positive_int, space_name
from ..argtypes import seed as seed_number
from ..config import Config, add_config_flags, option
from ..figures import labelled_grid
from ..photos import ALIGNMENT_FILE, align_photos, alignment_for, code_transforms, paste_edits
from ..rows import write_rows
from ..studies.presets import PN_SAMPLES
from .common import add_machine_flags, load_generator, pn_stats_for

NAME = "drag"
HELP = "drag points of an inverted face or a sample (DragGAN)"
RANKS = "one"
SHOWN = 256          # the figure draws points on faces shown at this size


@dataclass(frozen=True)
class DragConfig(Config):
    """One drag of one code."""

    space: str = option("WPlus", "space of --seed's sample, and of codes whose file does not say", type=space_name)
    index: int = option(0, "which code of --codes", type=non_negative_int)
    steps: int = option(300, "at most this many Adam steps (it stops earlier when every handle is within the "
                             "tolerance of its target)", type=int_in(0, MAX_DRAG_STEPS))
    feature_layer: Optional[str] = option(None, "conv layer whose features are dragged and tracked",
                                          default_text="b128.conv1 from 128 px, b32.conv1 at 64 px")
    r1: Optional[int] = option(None, "motion disc radius, px", type=positive_int,
                               default_text="3 at 512 px scaled; 1 at 64 px")
    r2: Optional[int] = option(None, "tracking patch half-size, px", type=positive_int,
                               default_text="12 at 512 px scaled; 3 at 64 px")
    lambda_mask: float = option(10.0, "weight of keeping the features outside --mask", type=non_negative_float)
    invert_steps: int = option(QUICK.steps, "--photo: steps of the quick recipe that inverts the face",
                               type=int_in(0, 10_000))
    pn_samples: int = PN_SAMPLES["quick"]
    blend: str = option("face", "--paste-back blend: the face or the whole aligned square", choices=("face", "square"))


CONFIG = DragConfig


def point(text: str) -> Tuple[float, float]:
    x, y = text.split(",")
    return float(x), float(y)


def drag_pair(text: str) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """'hx,hy:tx,ty' -> ((hx, hy), (tx, ty))."""
    try:
        handle, target = text.split(":")
        return point(handle), point(target)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write HANDLE:TARGET as x,y:x,y (pixels), e.g. 30,40:30,46") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_flags(p)
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--codes", type=existing_file, help="codes.safetensors written by `invert` (or `drag`)")
    start.add_argument("--seed", type=seed_number, help="drag a generator sample: z of this seed in --space")
    start.add_argument("--photo", type=existing_file, help="a photo: its most confident face is aligned into OUT and "
                       "inverted into --space by the quick recipe (--invert-steps), then dragged")
    p.add_argument("--drag", action="append", type=drag_pair, default=[], metavar="HX,HY:TX,TY",
                   help="a handle and its target in pixels (repeat for several)")
    p.add_argument("--points", type=existing_file, help="JSON list of [[hx, hy], [tx, ty]] pairs (instead of --drag)")
    p.add_argument("--mask", type=existing_file, help="R x R image, white (>= 128) where the image may change")
    add_config_flags(p, DragConfig)
    p.add_argument("--paste-back", action="store_true", help="also write the photo with the dragged face pasted back")
    p.add_argument("--alignment", type=existing_file, default=None,
                   help="the alignment file of the codes' faces (--paste-back; default alignment.json beside --codes)")


def read_pairs(args: argparse.Namespace) -> List[Tuple[Tuple[float, float], Tuple[float, float]]]:
    """The handle/target pairs of --drag or --points, or UsageError."""
    if args.points is not None and args.drag:
        raise UsageError("give the pairs with --drag or with --points, not both")
    if args.points is None:
        if not args.drag:
            raise UsageError("no points to drag: give --drag HX,HY:TX,TY (repeatable) or --points FILE")
        return list(args.drag)
    try:
        data = json.loads(Path(args.points).read_text())
        pairs = [((float(h[0]), float(h[1])), (float(t[0]), float(t[1]))) for h, t in data]
    except (ValueError, TypeError, IndexError, KeyError) as e:
        raise UsageError(f"--points {args.points}: expected a JSON list of [[hx, hy], [tx, ty]] pairs ({e})") from None
    if not pairs:
        raise UsageError(f"--points {args.points} holds no pairs")
    return pairs


def read_mask(path: Optional[Path], size: int) -> Optional[torch.Tensor]:
    """The editable region [R, R] of 0/1 from a mask image (white: may change), or UsageError."""
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            gray = np.asarray(im.convert("L"))
    except OSError as e:
        raise UsageError(f"--mask {path}: not a readable image ({e})") from None
    if gray.shape != (size, size):
        raise UsageError(f"--mask {path} is {gray.shape[1]} x {gray.shape[0]}; the generator's images are {size} x "
                         f"{size}")
    return torch.from_numpy((gray >= 128).astype(np.float32))


def check(args: argparse.Namespace) -> None:
    read_pairs(args)
    if args.paste_back:
        if args.seed is not None:
            raise UsageError("--paste-back needs --codes of aligned photos or --photo (a --seed sample has no photo)")
        if args.codes is not None:
            alignment_for(args.codes, args.alignment)
        elif args.alignment is not None:
            raise UsageError("--alignment goes with --codes; --photo writes its own alignment into OUT")
    elif args.alignment is not None:
        raise UsageError("--alignment matters only with --paste-back")


def marked(image: torch.Tensor, points: List[Tuple[Tuple[float, float], str]], size: int) -> torch.Tensor:
    """uint8 [3, SHOWN, SHOWN]: the image [3, R, R] in [-1, 1] enlarged, with each (x, y) point drawn as a dot."""
    pil = Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy()).resize((SHOWN, SHOWN), Image.BICUBIC)
    draw = ImageDraw.Draw(pil)
    k = SHOWN / size
    for (x, y), colour in points:
        cx, cy = (x + 0.5) * k, (y + 0.5) * k
        draw.ellipse((cx - 4, cy - 4, cx + 4, cy + 4), fill=colour, outline="white")
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1)


def run(args: argparse.Namespace) -> None:
    c = DragConfig.from_args(args)
    pairs = read_pairs(args)
    G = load_generator(args)
    mask = read_mask(args.mask, G.resolution)
    settings = DragSettings(feature_layer=c.feature_layer, r1=c.r1, r2=c.r2, lambda_mask=c.lambda_mask,
                            max_steps=c.steps)
    try:   # refused before a photo is aligned and inverted
        settings.resolved(G.resolution, list(G.synthesis.feature_layers))
        check_points([h for h, _ in pairs], [t for _, t in pairs], G.resolution)
    except ValueError as e:
        raise UsageError(str(e)) from None
    meta: dict = {}
    if args.codes is not None:
        saved = read_code_file(args.codes, args.device)
        saved.check_generator(G)
        if c.index >= len(saved.code):
            raise UsageError(f"--index {c.index}: {args.codes} holds {len(saved.code)} code(s)")
        name, options = saved.space or c.space, saved.space_options
        space = build_space(name, G, pn_stats_for(G, [name], c.pn_samples), **options)
        code = saved.code.select(slice(c.index, c.index + 1))
        targets = saved.meta.get("targets")
        if isinstance(targets, list) and len(targets) == len(saved.code):
            meta["targets"] = [targets[c.index]]
    elif args.photo is not None:   # aligned into OUT and inverted, as `invert --align` would
        out = Path(args.out)
        names, _ = align_photos((args.photo,), out, FaceAligner(size=G.resolution), face=0)
        face_file = out / names[0]
        space = build_space(c.space, G, pn_stats_for(G, [c.space], c.pn_samples))
        inverter = HybridInverter.from_recipe(space, QUICK.replace(steps=c.invert_steps), progress=True)
        code = inverter.invert(load_images([face_file], G.resolution).to(args.device)).code
        meta["targets"] = [str(face_file)]
        print(f"{args.photo}: face 0 aligned into {face_file} and inverted into {c.space} ({c.invert_steps} quick steps)")
    else:
        space = build_space(c.space, G, pn_stats_for(G, [c.space], c.pn_samples))
        code = space.random(1, seed=args.seed)
        meta["seed"] = args.seed
    try:
        res = drag(space, code, [h for h, _ in pairs], [t for _, t in pairs], mask=mask, settings=settings)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with torch.no_grad():
        before = space.synthesize(code)[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = res.settings
    handles = [(h, "red") for h, _ in pairs] + [(t, "blue") for _, t in pairs]
    tracked = [(tuple(p), "red") for p in res.points[-1].tolist()] + [(t, "blue") for _, t in pairs]
    labelled_grid(out / "drag.png", [torch.stack([marked(before, handles, G.resolution),
                                                  marked(res.image[0], tracked, G.resolution)])],
                  [space.name], ["start: handles (red), targets (blue)", f"after {res.steps} steps"],
                  captions=[["", f"max distance {res.distances[-1].max():.1f} px"]], tile_inches=2.4,
                  title=f"drag in {space.name} ({s.feature_layer}, r1 {s.r1}, r2 {s.r2})")
    rows = [{"step": i, "point": k, "x": f"{x:g}", "y": f"{y:g}", "distance": f"{float(res.distances[i, k]):.4g}"}
            for i in range(len(res.points)) for k, (x, y) in enumerate(res.points[i].tolist())]
    write_rows(out / "drag_points.csv", rows, ["step", "point", "x", "y", "distance"])
    res.code.save(out / "codes.safetensors", space=space.name, generator_fingerprint=generator_fingerprint(G),
                  generator=str(args.generator), steps=res.steps,
                  drag={"pairs": [[list(h), list(t)] for h, t in pairs], "feature_layer": s.feature_layer,
                        "r1": s.r1, "r2": s.r2, "lambda_mask": s.lambda_mask, "max_steps": s.max_steps,
                        "mask": str(args.mask) if args.mask else None, "reached": res.reached},
                  **({"space_options": space.options()} if space.options() else {}), **meta)
    state = "reached the targets" if res.reached else f"stopped at the {s.max_steps}-step limit"
    print(f"{space.name}: {state} after {res.steps} steps ({res.seconds:.1f} s); distances "
          f"{', '.join(f'{d:.1f}' for d in res.distances[-1].tolist())} px; wrote {out}/drag.png, drag_points.csv, "
          "codes.safetensors")
    if args.paste_back:
        codes = args.codes if args.codes is not None else out / "codes.safetensors"
        alignment = alignment_for(args.codes, args.alignment) if args.codes is not None else out / ALIGNMENT_FILE
        transforms = code_transforms(meta.get("targets"), codes, alignment)
        written = paste_edits(out, transforms, res.image[:, None].cpu(), (1.0,), "drag", c.blend)
        print(f"wrote {written[0]} (the photo with the dragged face pasted back)")
