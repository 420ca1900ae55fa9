"""The photo-folder pipeline alone, against what a trainer consumes: indexing, and images per second.

    python -m experiments.benchmarks.bench_folder_data [--index-files 70000] [--batches 12]

1. Indexing: a temporary folder laid out as FFHQ's (70 subfolders of 1,000 PNG files; each file the
   same small valid PNG, since indexing reads no pixels), indexed by `latentspaces.datasets.index_images`
   three times (the median printed), then the index written and read back as the run does.
2. Pipeline: PNG folders at 64, 256 and 1024 px (faces of the default domain upscaled, with per-pixel
   grain so the PNGs compress like photos, not like flat colour), read by `FolderStream` (decode,
   square crop, flip, uint8 batches through the DataLoader) with 0, 1 and 2 worker processes; images
   per second over --batches batches after one warm-up batch (which starts the workers).
3. The trainer's consumption at 64 px: SDIC's training step (`train_sdic`'s defaults: width 0.5, input
   32, D-features perceptual, batch 8) on the default model, timed over 10 steps; images per second
   = 8 x steps per second. At 1024 px the step times of `bench_head_memory` (CPU, batch 1) apply.
Printed: one table per part and the ratio pipeline / trainer at 64 px.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

from experiments.distributed import World
from experiments.training.folder_data import FolderStream
from latentspaces.datasets import FaceSampler
from latentspaces.datasets.image_folder import FolderIndex, ImageFolder, index_images
from latentspaces.images import to_uint8

FFHQ_FOLDERS, FFHQ_PER_FOLDER = 70, 1000
PIPELINE = {64: (256, 8), 256: (96, 8), 1024: (24, 2)}   # resolution: (files, batch)


def make_index_folder(root: Path, files: int) -> None:
    """`files` copies of one small PNG, 1,000 per subfolder (FFHQ's layout)."""
    import io
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 100, 90)).save(buf, format="png")
    data = buf.getvalue()
    for i in range(files):
        folder = root / f"{i // FFHQ_PER_FOLDER:05d}"
        if i % FFHQ_PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"{i:05d}.png").write_bytes(data)


def bench_index(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ffhq"
        t = time.perf_counter()
        make_index_folder(root, files)
        made = time.perf_counter() - t
        times = []
        for _ in range(3):
            t = time.perf_counter()
            found = index_images(root)
            times.append(time.perf_counter() - t)
        assert len(found) == files
        t = time.perf_counter()
        index = FolderIndex.build(root)
        index.save(Path(tmp) / "index.json")
        assert FolderIndex.load(Path(tmp) / "index.json") == index
        saved = time.perf_counter() - t
    print(f"\n## indexing {files:,} files in {files // FFHQ_PER_FOLDER} folders (made in {made:.1f} s)\n")
    print("| step | seconds |\n| --- | ---: |")
    print(f"| index_images (median of 3: {', '.join(f'{s:.2f}' for s in times)}) | {statistics.median(times):.2f} |")
    print(f"| build + save + load the index (JSON) | {saved:.2f} |")


def make_photo_folder(root: Path, resolution: int, files: int) -> None:
    """Default-domain faces upscaled (bicubic) to `resolution`, with +-6 levels of grain, as PNG."""
    faces = to_uint8(FaceSampler("cpu").sample(files, 11)).permute(0, 2, 3, 1).numpy()
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i, face in enumerate(faces):
        big = np.asarray(Image.fromarray(face).resize((resolution, resolution), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-6, 7, big.shape, dtype=np.int16)
        Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8)).save(root / f"{i:05d}.png")


def bench_pipeline(batches: int) -> float:
    """Prints the pipeline table; returns images per second at 64 px with 2 workers."""
    print("\n## the pipeline alone (FolderStream: decode, crop, flip, batches), images per second\n")
    print("| resolution | PNG size | batch | 0 workers | 1 worker | 2 workers |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    best64 = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for res, (files, batch) in PIPELINE.items():
            root = Path(tmp) / f"r{res}"
            make_photo_folder(root, res, files)
            size_kb = sum(p.stat().st_size for p in root.iterdir()) / files / 1024
            data = ImageFolder(FolderIndex.build(root), res)
            rates = []
            for workers in (0, 1, 2):
                stream = FolderStream(data, batch, World(), seed=0, flip=True, workers=workers,
                                      device=torch.device("cpu"), skipped_log=None)
                stream.next()   # warm-up: starts the workers
                n = min(batches, stream.batches.per_epoch - 1)
                t = time.perf_counter()
                for _ in range(n):
                    stream.next()
                rates.append(n * batch / (time.perf_counter() - t))
                del stream
            if res == 64:
                best64 = rates[2]
            print(f"| {res} px | {size_kb:.0f} KB | {batch} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
    return best64


def bench_trainer(steps: int = 10) -> float:
    """Images per second SDIC's trainer consumes at 64 px (batch 8, its defaults, --data default)."""
    from experiments.training.train_sdic import SDICConfig, SDICTrainer
    import latentspaces as ls

    with tempfile.TemporaryDirectory() as tmp:
        args = SDICConfig(out=tmp, perceptual="d-features", identity="none")
        G = ls.load_generator("default").eval().requires_grad_(False)
        trainer = SDICTrainer(args, Path(tmp), G, World(), torch.device("cpu"))
        trainer.step(0)   # warm-up
        t = time.perf_counter()
        for s in range(steps):
            trainer.step(s + 1)
        rate = steps * args.batch / (time.perf_counter() - t)
    print(f"\n## the trainer at 64 px: SDIC, batch 8, {steps} steps: {rate:.1f} images per second consumed")
    return rate


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index-files", type=int, default=FFHQ_FOLDERS * FFHQ_PER_FOLDER)
    ap.add_argument("--batches", type=int, default=12, help="batches timed per pipeline setting")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_index(args.index_files)
    pipeline = bench_pipeline(args.batches)
    trainer = bench_trainer()
    print(f"\npipeline (2 workers) / trainer at 64 px: {pipeline / trainer:.0f}x")


if __name__ == "__main__":
    main()
