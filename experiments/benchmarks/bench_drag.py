"""Drag steps: seconds per step (fast path against the full upsampled map), and the 64 px settings sweep.

    python -m experiments.benchmarks.bench_drag [--steps 20] [--repeats 3]            # step time at 64 px
    python -m experiments.benchmarks.bench_drag --resolution 1024 --steps 2 --repeats 1  # config-f, random weights
    python -m experiments.benchmarks.bench_drag --sweep [--pairs 6] [--max-steps 150]  # layer and radii at 64 px

Step time: a W+ drag of one handle 20 px away (it never arrives within --steps), run with the fast path
(`upsampled_at`: only the pixels a step reads) and with `reference=True` (the whole feature map upsampled
each step, as the released code does), interleaved round-robin --repeats times after one untimed warm-up;
the median seconds per step of each and their ratio are printed. At 1024 px the generator is config-f
with random weights (batch 1).

--sweep: the 64 px default model has no 6th block and the released disc scales to nothing there, so its
feature layer and radii are chosen by the drag study's measure: generator samples (z of seeds 2i, pairs
--pairs), 5 landmarks of face 2i dragged to face 2i + 1's in W+, MD (px) of the landmarks dlib finds on the
result, identity kept (dlib, raw cosine) and steps, per (layer, r1, r2). Results go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
import torch

import latentspaces as ls
from latentspaces.drag import DragSettings, drag


def step_seconds(space, code, steps: int, reference: bool) -> float:
    handle = (space.G.resolution // 2 - 10, space.G.resolution // 2)
    target = (handle[0] + 20, handle[1])
    t = time.perf_counter()
    res = drag(space, code, [handle], [target], settings=DragSettings(max_steps=steps, tolerance=0.5),
               reference=reference)
    assert res.steps == steps, res.steps
    return (time.perf_counter() - t) / steps


def timing(args: argparse.Namespace) -> None:
    if args.resolution == 64:
        G = ls.load_generator("default")
    else:
        torch.manual_seed(0)   # config-f shapes (ls.Generator's defaults), random weights
        G = ls.Generator(resolution=args.resolution).eval().requires_grad_(False)
    space = ls.WPlus(G)
    code = space.random(1, seed=0)
    for reference in (False, True):   # warm-up
        step_seconds(space, code, 1, reference)
    times = {"fast": [], "reference": []}
    for _ in range(args.repeats):
        for name in times:
            times[name].append(step_seconds(space, code, args.steps, name == "reference"))
    fast, ref = statistics.median(times["fast"]), statistics.median(times["reference"])
    s = DragSettings().resolved(G.resolution, list(G.synthesis.feature_layers))
    print(f"{G.resolution} px, W+, feature {s.feature_layer}, r1 {s.r1}, r2 {s.r2}, {torch.get_num_threads()} threads: "
          f"fast {fast:.4f} s/step, reference {ref:.4f} s/step; reference/fast {ref / fast:.2f}x")


def sweep(args: argparse.Namespace) -> None:
    from experiments.studies.drag_study import POINT_SETS, code_of_z
    from latentspaces.align import FaceAligner
    from latentspaces.metrics.identity import make_identity

    G = ls.load_generator("default")
    space, aligner, identity = ls.WPlus(G), FaceAligner(size=64), make_identity("dlib")
    idx = list(POINT_SETS[5])
    z = torch.stack([torch.randn(512, generator=torch.Generator().manual_seed(i)) for i in range(2 * args.pairs)])
    with torch.no_grad():
        faces = G.synthesis(G.broadcast(G.mapping(z)))
    lm, _ = aligner.aligned_landmarks(faces)
    starts = code_of_z(space, z[0::2])
    print("| layer | r1 | r2 | MD (px) | MD at start | identity | steps | s / drag |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for layer, r1, r2 in itertools.product(args.layers.split(","), (1, 2, 3), (2, 3, 4)):
        md, md0, ident, steps, secs = [], [], [], [], []
        for i in range(args.pairs):
            handles, goals = lm[2 * i][idx], lm[2 * i + 1][idx].clip(0, 63)
            t = time.perf_counter()
            res = drag(space, starts.select(slice(i, i + 1)), handles.tolist(), goals.tolist(),
                       settings=DragSettings(feature_layer=layer, r1=r1, r2=r2, max_steps=args.max_steps))
            secs.append(time.perf_counter() - t)
            (found,), _ = aligner.aligned_landmarks(res.image)
            md.append(np.linalg.norm(found[idx] - goals, axis=1).mean())
            md0.append(np.linalg.norm(handles - goals, axis=1).mean())
            ident.append(float(identity(res.image, faces[2 * i:2 * i + 1])[0]))
            steps.append(res.steps)
        print(f"| {layer} | {r1} | {r2} | {np.mean(md):.2f} | {np.mean(md0):.2f} | {np.mean(ident):.3f} | "
              f"{np.mean(steps):.0f} | {np.mean(secs):.1f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=64, help="64 (the default model) or a config-f size")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sweep", action="store_true", help="the 64 px layer and radii sweep instead of timing")
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--max-steps", type=int, default=150)
    p.add_argument("--layers", default="b16.conv1,b32.conv0,b32.conv1")
    args = p.parse_args()
    (sweep if args.sweep else timing)(args)


if __name__ == "__main__":
    main()
