"""The README's "Your own photos" walk-through, run on scikit-image's astronaut, and its before/after figure.

    python -m experiments.tools.walkthrough --out runs/walkthrough --figure docs/astronaut_walkthrough.png

Saves the photo as OUT/astronaut.png, then runs the four commands of the README (printed as it runs them):

    latentspaces align OUT/astronaut.png --size 256 --out OUT
    latentspaces invert --targets OUT/astronaut_0.png --out OUT             # F/Z+, 200 steps, the default model
    latentspaces directions --method ganspace --kind z --out OUT
    latentspaces edit --codes OUT/codes.safetensors --direction OUT/ganspace_z.safetensors --alphas=-2,0,2 \\
        --paste-back --out OUT                                              # OUT/astronaut_ganspace_0_+2.png, ...

and draws FIGURE: the photo and the two pasted-back edits (head and shoulders) above the aligned face, its
F/Z+ inversion and the two edited faces at the generator's resolution. The PNG is palette-quantised to stay
small. Everything runs offline on the CPU in about a minute.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

import latentspaces as ls
from experiments.argtypes import non_negative_int, out_dir, positive_float, positive_int
from experiments.cli import main as latentspaces
from experiments.photos import ALIGNMENT_FILE
from latentspaces.align import load_alignment
from latentspaces.directions import load_directions
from latentspaces.images import read_photo, to_uint8
from latentspaces.spaces import build_space, read_code_file
from latentspaces.storage import atomic_path

PANEL = 256          # height of the photo panels, px
FACE = 160           # side of the face panels, px
GAP = 6
LABEL = 20           # height of a label strip


def run(argv: Sequence[str]) -> None:
    """One `latentspaces` command, printed first as a reader would type it."""
    print("$ latentspaces " + " ".join(shlex.quote(a) for a in argv), flush=True)
    latentspaces(list(argv))


def commands(out: Path, steps: Optional[int], samples: Optional[int], index: int, alpha: float) -> List[List[str]]:
    """The walk-through's four command lines."""
    o = str(out)
    invert = ["invert", "--targets", f"{o}/astronaut_0.png", "--out", o]
    directions = ["directions", "--method", "ganspace", "--kind", "z", "--out", o]
    edit = ["edit", "--codes", f"{o}/codes.safetensors", "--direction", f"{o}/ganspace_z.safetensors",
            f"--alphas={-alpha:g},0,{alpha:g}", "--paste-back", "--out", o]
    if steps is not None:
        invert += ["--steps", str(steps)]
    if samples is not None:
        directions += ["--samples", str(samples)]
    if index:
        edit += ["--index", str(index)]
    return [["align", f"{o}/astronaut.png", "--size", "256", "--out", o], invert, directions, edit]


def _label(img: Image.Image, text: str) -> Image.Image:
    """img with `text` on a white strip above it."""
    out = Image.new("RGB", (img.width, img.height + LABEL), "white")
    out.paste(img, (0, LABEL))
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:   # Pillow < 10.1: the bitmap font has one size
        font = ImageFont.load_default()
    ImageDraw.Draw(out).text((4, 2), text, fill="black", font=font)
    return out


def _row(panels: Sequence[Image.Image]) -> Image.Image:
    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    row = Image.new("RGB", (width, max(p.height for p in panels)), "white")
    x = 0
    for p in panels:
        row.paste(p, (x, 0))
        x += p.width + GAP
    return row


def _face(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(x).permute(1, 2, 0).numpy()).resize((FACE, FACE), Image.BICUBIC)


def figure(out: Path, path: Path, index: int, alpha: float, device: str = "cpu") -> None:
    """The before/after figure from the walk-through's files in OUT."""
    transform = load_alignment(out / ALIGNMENT_FILE)["astronaut_0.png"]
    direction = load_directions(out / "ganspace_z.safetensors")[index]
    saved = read_code_file(out / "codes.safetensors", device)
    G = ls.load_generator("default", device=device)
    saved.check_generator(G)
    space = build_space(saved.space, G, **saved.space_options)
    with torch.no_grad():
        faces = [space.synthesize(space.edit(saved.code, direction, a))[0].cpu() for a in (0.0, -alpha, alpha)]
    # head and shoulders: 2.2 x 1.65 squares around the face's square, inside the photo
    q = np.asarray(transform.quad)
    centre, side = q.mean(axis=0), transform.qsize
    w, h = min(2.2 * side, transform.photo_size[0]), min(1.65 * side, transform.photo_size[1])
    left = float(np.clip(centre[0] - w / 2, 0, transform.photo_size[0] - w))
    top = float(np.clip(centre[1] - 0.45 * h, 0, transform.photo_size[1] - h))
    box = (int(left), int(top), int(left + w), int(top + h))
    size = (round(PANEL * w / h), PANEL)
    name = direction.name
    photos = [(read_photo(out / "astronaut.png")[0], "the photo"),
              (Image.open(out / f"astronaut_{name}_{-alpha:+g}.png"), f"edited, alpha {-alpha:+g}, pasted back"),
              (Image.open(out / f"astronaut_{name}_{alpha:+g}.png"), f"edited, alpha {alpha:+g}, pasted back")]
    top_row = _row([_label(p.convert("RGB").crop(box).resize(size, Image.LANCZOS), text) for p, text in photos])
    aligned = read_photo(out / "astronaut_0.png")[0].resize((FACE, FACE), Image.LANCZOS)
    r = G.resolution
    bottom_row = _row([_label(aligned, "aligned (FFHQ)"), _label(_face(faces[0]), f"F/Z+ inversion, {r} px"),
                       _label(_face(faces[1]), f"{name}, {-alpha:+g}"), _label(_face(faces[2]), f"{name}, {alpha:+g}")])
    width = max(top_row.width, bottom_row.width)
    canvas = Image.new("RGB", (width, top_row.height + GAP + bottom_row.height), "white")
    canvas.paste(top_row, ((width - top_row.width) // 2, 0))
    canvas.paste(bottom_row, ((width - bottom_row.width) // 2, top_row.height + GAP))
    small = canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        small.save(tmp, format="png", optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB, {canvas.width}x{canvas.height})")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.tools.walkthrough", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=out_dir, default=Path("runs/walkthrough"), help="the walk-through's folder")
    ap.add_argument("--figure", type=Path, default=Path("docs/astronaut_walkthrough.png"), help="the figure's path")
    ap.add_argument("--steps", type=non_negative_int, default=None, help="invert's steps (default: invert's, 200)")
    ap.add_argument("--samples", type=positive_int, default=None,
                    help="GANSpace's W samples (default: directions', 100000)")
    ap.add_argument("--index", type=non_negative_int, default=0, help="the GANSpace direction shown (default 0)")
    ap.add_argument("--alpha", type=positive_float, default=2.0, help="the edit's step, shown at -alpha and +alpha")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    from skimage import data   # the photograph; scikit-image is a dependency

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "astronaut.png") as tmp:
        Image.fromarray(data.astronaut()).save(tmp, format="png")
    t = time.time()
    for argv_ in commands(out, args.steps, args.samples, args.index, args.alpha):
        run(argv_)
    print(f"the four commands took {time.time() - t:.0f} s")
    figure(out, args.figure, args.index, args.alpha)


if __name__ == "__main__":
    main()
