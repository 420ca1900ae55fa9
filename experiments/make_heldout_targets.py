"""Write the shipped held-out target set: the first N held-out DCGAN faces as uint8 safetensors.

    python -m experiments.make_heldout_targets [--n 64]

Image i comes from the held-out seed HELDOUT_BASE + i (latentspaces.datasets.dcgan_faces), which no
training stream uses. Stored as uint8 [N, 3, 64, 64] (0..255): what a photo file would hold.
"""

from __future__ import annotations

import argparse

import torch
from safetensors.torch import save_file

from latentspaces.assets import ASSET_DIR
from latentspaces.datasets import HELDOUT_BASE, FaceSampler


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args(argv)
    x = FaceSampler("cpu").heldout(args.n)
    u8 = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).contiguous()
    path = ASSET_DIR / "heldout_targets.safetensors"
    save_file({"images": u8}, str(path), metadata={"format": "latentspaces.images", "source": "dcgan_faces heldout",
                                                   "seeds": f"{HELDOUT_BASE}..{HELDOUT_BASE + args.n - 1}"})
    print(f"wrote {args.n} held-out targets to {path}")


if __name__ == "__main__":
    main()
