"""Write the default domain as a photo folder: its training stream as PNGs, and the held-out targets beside.

    python -m experiments.tools.domain_folder --out runs/domain_photos --n 10000

OUT/train/<shard>/<i>.png: n faces of the default domain's training stream (the DCGAN sampler with
seed --seed, batches of 64, the draws `FaceSampler.stream` makes), 1,000 per subfolder as FFHQ's
folders are; OUT/heldout/<i>.png: the shipped held-out targets (`latentspaces.assets.heldout_targets`),
which no training stream draws. The default domain's "photos": what `--data OUT/train --val
OUT/heldout` trains and scores a head on, to compare against training on generator samples.
Rerunning skips files already written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

import torch
from PIL import Image

from experiments.argtypes import positive_int
from latentspaces.assets import heldout_targets
from latentspaces.datasets import FaceSampler
from latentspaces.images import to_uint8
from latentspaces.progress import progress_bar
from latentspaces.storage import atomic_path

PER_FOLDER = 1000
BATCH = 64


def _save(image: torch.Tensor, path: Path) -> None:
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB").save(tmp, format="png")


def write_domain_folder(out: Path, n: int, seed: int = 0, heldout: int = 64) -> None:
    """n training-stream faces into out/train/, `heldout` held-out targets into out/heldout/ (PNG, 64 px)."""
    stream = FaceSampler("cpu").stream(BATCH, seed)
    done = 0
    with progress_bar(total=n, desc="write faces", unit="img") as bar:
        while done < n:
            batch = to_uint8(next(stream))[: n - done]
            for k, image in enumerate(batch):
                i = done + k
                _save(image, out / "train" / f"{i // PER_FOLDER:05d}" / f"{i:06d}.png")
            done += len(batch)
            bar.update(len(batch))
    for i, image in enumerate(to_uint8(heldout_targets(heldout))):
        _save(image, out / "heldout" / f"{i:03d}.png")
    print(f"wrote {n} training faces to {out / 'train'} and {heldout} held-out faces to {out / 'heldout'}")


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder to write (train/ and heldout/ inside)")
    ap.add_argument("--n", type=positive_int, default=10_000, help="training faces")
    ap.add_argument("--seed", type=int, default=0, help="seed of the training stream")
    ap.add_argument("--heldout", type=positive_int, default=64, help="held-out targets (at most the 64 shipped)")
    args = ap.parse_args(argv)
    write_domain_folder(args.out, args.n, args.seed, args.heldout)


if __name__ == "__main__":
    main()
