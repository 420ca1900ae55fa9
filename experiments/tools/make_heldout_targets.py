"""Write the shipped held-out target set: the first N held-out DCGAN faces as uint8 safetensors.

    python -m experiments.tools.make_heldout_targets [--n 64] [--out PATH]

Image i comes from the held-out seed HELDOUT_BASE + i (latentspaces.datasets.dcgan_faces), which no
training stream uses. Stored as uint8 [N, 3, 64, 64] (0..255): what a photo file would hold; read back
by `latentspaces.assets.heldout_targets`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from experiments.argtypes import positive_int
from latentspaces.assets import ASSET_DIR, ASSETS, HELDOUT_TARGETS
from latentspaces.datasets import HELDOUT_BASE, FaceSampler
from latentspaces.fingerprints import file_sha256
from latentspaces.images import IMAGES_FORMAT, to_uint8
from latentspaces.storage import save_tensors



def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=positive_int, default=64, help="number of held-out faces")
    ap.add_argument("--out", type=Path, default=ASSET_DIR / ASSETS[HELDOUT_TARGETS].file,
                    help="file to write (default: the shipped asset)")
    args = ap.parse_args(argv)
    path = args.out
    save_tensors(path, {"images": to_uint8(FaceSampler("cpu").heldout(args.n))}, IMAGES_FORMAT, 1,
                 source="dcgan_faces heldout", seeds=[HELDOUT_BASE, HELDOUT_BASE + args.n - 1])
    print(f"wrote {args.n} held-out targets to {path} (sha256 {file_sha256(path)}: the value to record in "
          "latentspaces.assets.ASSETS['heldout-targets'] when it replaces the shipped file)")


if __name__ == "__main__":
    main()
