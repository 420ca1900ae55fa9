"""Writes docs/tutorial.ipynb, the library's tutorial notebook, from the cells below (the notebook is generated,
so its source lives in one reviewed place; tests/test_tutorial.py executes it on tiny settings).

    python -m experiments.tools.make_tutorial [--out docs/tutorial.ipynb]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

import nbformat

from latentspaces.storage import atomic_write_text

CELLS = [
    ("markdown", """# latentspaces in ten cells

Everything here runs offline on the CPU with the embedded default model (a 64 px face StyleGAN2): invert
held-out faces into three latent spaces, compare them, find directions and edit, plot identity against the
edit step, and run one compensation head beside its base encoder. The settings below are the quick ones;
the test suite runs this notebook with `TUTORIAL_STEPS=5`."""),
    ("code", """import os
import matplotlib.pyplot as plt
import torch

import latentspaces as ls
from latentspaces.assets import heldout_targets
from latentspaces.directions import ganspace
from latentspaces.images import to_uint8
from optimizers import QUICK, HybridInverter

STEPS = int(os.environ.get("TUTORIAL_STEPS", 100))     # inversion steps (the quick recipe's 100)
SAMPLES = int(os.environ.get("TUTORIAL_SAMPLES", 50_000))   # mapping samples for GANSpace
torch.manual_seed(0)"""),
    ("markdown", """## The generator and four targets
`ls.load_generator` reads rosinality `.pt`, NVlabs `.pkl` and this project's files; `"default"` is the
shipped model. The held-out faces were never seen in training."""),
    ("code", """G = ls.load_generator("default")
targets = heldout_targets(4)                    # [4, 3, 64, 64] in [-1, 1]
print(G.resolution, G.num_ws, G.w_dim, tuple(targets.shape))"""),
    ("markdown", """## Invert into three spaces
One optimizer (`HybridInverter`) for every space; a recipe fixes steps, learning rate, loss and start."""),
    ("code", """recipe = QUICK.replace(steps=STEPS)
results = {}
for space in (ls.ZPlus(G), ls.WPlus(G), ls.FZPlus(G)):
    results[space.name] = (space, HybridInverter.from_recipe(space, recipe, progress=False).invert(targets))
for name, (space, result) in results.items():
    mse = (result.images - targets).square().flatten(1).mean(1)
    print(f"{name:7s} MSE {mse.mean():.4f} (per image {', '.join(f'{m:.4f}' for m in mse.tolist())})")"""),
    ("code", """fig, axes = plt.subplots(4, 4, figsize=(6, 6))
columns = [("target", targets)] + [(name, result.images) for name, (_, result) in results.items()]
for j, (title, images) in enumerate(columns):
    for i in range(4):
        axes[i, j].imshow(to_uint8(images[i]).permute(1, 2, 0))
        axes[i, j].axis("off")
    axes[0, j].set_title(title, fontsize=9)
plt.tight_layout()"""),
    ("markdown", """## Directions and edits
GANSpace directions, scaled by each axis' standard deviation as `latentspaces directions` writes them,
so alpha counts standard deviations: W axes for W-type spaces, their Z counterparts for Z-type ones. Each
space edits in its own terms (F/Z+ moves only the detail codes above F)."""),
    ("code", """directions = {kind: ganspace(G, n_samples=SAMPLES, n_components=3, kind=kind, scale_by_std=True)
              for kind in ("z", "w")}
alphas = [-2, -1, 0, 1, 2]
space, result = results["FZPlus"]
with torch.no_grad():
    edited = torch.stack([space.synthesize(space.edit(result.code, directions[space.kind][0], a))
                          for a in alphas], dim=1)
fig, axes = plt.subplots(1, len(alphas), figsize=(7, 1.6))
for j, a in enumerate(alphas):
    axes[j].imshow(to_uint8(edited[0, j]).permute(1, 2, 0))
    axes[j].set_title(f"alpha {a:+d}", fontsize=8)
    axes[j].axis("off")"""),
    ("markdown", """## Identity against the edit step
dlib's face descriptor (offline) between each target and its edited reconstruction, per space."""),
    ("code", """from latentspaces.metrics.identity import make_identity

identity = make_identity("dlib")
for name, (space, result) in results.items():
    curve = []
    for a in alphas:
        with torch.no_grad():
            images = space.synthesize(space.edit(result.code, directions[space.kind][0], a))
        curve.append(identity(images, targets).mean().item())
    plt.plot(alphas, curve, marker="o", label=name)
plt.xlabel("alpha (GANSpace direction 0)")
plt.ylabel("identity (dlib cosine)")
plt.legend()"""),
    ("markdown", """## A compensation head
HFGI corrects the W+ encoder's reconstruction with the distortion it sees, in one forward pass."""),
    ("code", """from encoders import load_encoder

base, head = load_encoder("default-wplus"), load_encoder("default-hfgi").bind(load_encoder("default-wplus"))
with torch.no_grad():
    ws = base(targets)
    x0 = G.synthesis(ws, noise_mode="const")
    comp = head.compensate(G, targets, ws, x0)
print(f"W+ encoder MSE {(x0 - targets).square().mean():.4f}, with HFGI {(comp.image - targets).square().mean():.4f}")"""),
]


def build() -> nbformat.NotebookNode:
    """The tutorial notebook (unexecuted) from `CELLS`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
                for kind, text in CELLS]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"   # fixed ids: the same cells give the same file
    return nb


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/tutorial.ipynb"))
    args = p.parse_args(argv)
    atomic_write_text(args.out, nbformat.writes(build()) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
