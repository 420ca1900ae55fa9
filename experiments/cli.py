"""The `latentspaces` command: invert, edit, compare, identity-curves, paired, compensation, directions.

    latentspaces compare --quick --out runs/quick          # Table 1 style comparison on the default model
    latentspaces identity-curves --quick --out runs/quick  # Fig. 6 style identity-vs-step curves
    latentspaces compensation --quick --out runs/comp      # base W+ encoder vs SDIC vs PTI vs F/Z+
    latentspaces paired --out runs/quick --a FZPlus        # wins and Wilcoxon p of F/Z+ against each space
    latentspaces score-identity --out runs/gpu             # identity of a compare run made with --identity none
    latentspaces invert --space FZPlus --targets face.png --out runs/me
    latentspaces directions --method ganspace --kind z --out runs/dirs
    latentspaces edit --space FZPlus --codes runs/me/codes.safetensors --direction runs/dirs/ganspace_z.safetensors --out runs/me
    torchrun --standalone --nproc_per_node=4 -m experiments.cli compare --out runs/full --n-targets 64   # sharded

Everything runs offline on the embedded default model unless --generator names a checkpoint.
`--quick` settings finish both main experiments in minutes on a 2-core CPU; the full settings are
the papers' (1200 steps, all 64 held-out targets).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from .distributed import World, close_world, init_world

# --quick: pixel MSE only in the loss (the perceptual distance is still reported), 100 steps, 8 targets.
QUICK = dict(targets=8, steps=100, lr=0.05, lambda_per=0.0, pn_samples=100_000, directions=3, direction_samples=50_000)
FULL = dict(targets=64, steps=1200, lr=0.01, lambda_per=1.0, pn_samples=1_000_000, directions=5, direction_samples=300_000)


def _setup(args):
    import latentspaces as ls

    G = ls.load_generator(args.generator, device=args.device)
    return ls, G


def _targets(args, G, n):
    from latentspaces import assets
    from latentspaces.images import load_images

    if args.targets in (None, "heldout"):
        if G.resolution != 64:
            raise SystemExit("the shipped held-out targets are 64 px faces; pass --targets FILES for this generator")
        return assets.heldout_targets(n).to(args.device)
    return load_images(args.targets.split(","), G.resolution).to(args.device)


def _perceptual(args, G):
    """The default model's D-features distance, LPIPS when asked for (and its weights exist), or none."""
    if args.perceptual == "none":
        return None
    if args.perceptual.startswith("lpips"):
        from latentspaces.metrics import make_perceptual

        return make_perceptual(args.perceptual).to(args.device)
    if args.generator != "default":
        raise SystemExit("--perceptual d-features is the default model's distance; use lpips-vgg or none")
    from latentspaces.assets import load_default_discriminator
    from latentspaces.metrics.d_features import DiscriminatorFeatures

    return DiscriminatorFeatures(load_default_discriminator().to(args.device))


def _identity(args):
    if args.identity == "none":
        return None
    from latentspaces.metrics.identity import DlibIdentity, FacenetIdentity

    return DlibIdentity() if args.identity == "dlib" else FacenetIdentity(args.device)


def _pn_stats(ls, G, cfg):
    """The P_N statistics of G (fitted once and cached; under torchrun rank 0 fits, the others read the cache)."""
    world = World.current()
    return world.main_first(lambda: ls.PNStats.fit(G, n_samples=cfg["pn_samples"], progress=world.main))


def _init_encoders(args, spaces) -> dict:
    """Space name -> initialising encoder: the F encoder for F spaces, the W+ encoder for W+, W, S, PN."""
    from encoders import load_encoder

    f_enc, w_enc, encoders = None, None, {}
    for name in spaces:
        if name in ("FWPlus", "FZ", "FZPlus"):
            f_enc = f_enc or load_encoder(args.f_encoder, args.device)
            encoders[name] = f_enc
        elif name in ("WPlus", "W", "S", "PN"):
            w_enc = w_enc or load_encoder(args.wplus_encoder, args.device)
            encoders[name] = w_enc
    return encoders  # Z and Z+ have no encoder: they start from the mean


def cmd_compare(args) -> None:
    from .space_comparison import SPACE_ORDER, run_space_comparison

    ls, G = _setup(args)
    cfg = QUICK if args.quick else FULL
    targets = _targets(args, G, args.n or cfg["targets"])
    spaces = args.spaces.split(",") if args.spaces else SPACE_ORDER
    pn = _pn_stats(ls, G, cfg) if "PN" in spaces else None
    encoders = _init_encoders(args, spaces) if args.init == "encoder" else None
    t = time.time()
    run_space_comparison(Path(args.out), G, targets, spaces, steps=args.steps or cfg["steps"],
                         lr=args.lr or cfg["lr"],
                         lambda_per=cfg["lambda_per"] if args.lambda_per is None else args.lambda_per,
                         lambda_reg=args.lambda_reg, perceptual=_perceptual(args, G), identity=_identity(args),
                         pn_stats=pn, encoders=encoders, chunk=args.chunk, seed=args.seed)
    if not World.current().main:
        return
    print((Path(args.out) / "space_comparison.md").read_text())
    print(f"wrote {args.out}/space_comparison.csv, .md, reconstructions.png ({time.time() - t:.0f} s)")


def cmd_identity_curves(args) -> None:
    from .identity_curves import CURVE_SPACES, run_identity_curves

    ls, G = _setup(args)
    cfg = QUICK if args.quick else FULL
    targets = _targets(args, G, args.n or cfg["targets"])
    identity = _identity(args)
    if identity is None:
        raise SystemExit("identity-curves needs an identity metric (--identity dlib)")
    spaces = args.spaces.split(",") if args.spaces else CURVE_SPACES
    perceptual = _perceptual(args, G)
    lam = cfg["lambda_per"] if args.lambda_per is None else args.lambda_per
    pn = _pn_stats(ls, G, cfg) if "PN" in spaces else None
    t = time.time()
    summary = run_identity_curves(Path(args.out), G, targets, identity, spaces, n_directions=cfg["directions"],
                                  direction_samples=cfg["direction_samples"], steps=args.steps or cfg["steps"],
                                  lr=args.lr or cfg["lr"], lambda_per=lam, perceptual=perceptual, chunk=args.chunk,
                                  seed=args.seed, pn_stats=pn)
    if not World.current().main:
        return
    for row in summary:
        print(f"{row['space']:8s} identity at |alpha|=2: {row.get('identity_at_2', float('nan')):.4f}  "
              f"mean over alphas: {row['identity_mean']:.4f}")
    print(f"wrote {args.out}/identity_curves.csv, identity_curves.png/.pdf, identity_summary.csv, "
          f"random_directions.png ({time.time() - t:.0f} s)")


def cmd_score_identity(args) -> None:
    import json

    from .space_comparison import SETTINGS_FILE, SPACE_ORDER, fill_identity, read_rows, summarize

    out = Path(args.out)
    if not (out / SETTINGS_FILE).is_file():
        raise SystemExit(f"{out / SETTINGS_FILE} not found: score-identity scores a folder written by compare")
    if args.identity == "none":
        raise SystemExit("score-identity needs an identity metric (--identity dlib or facenet)")
    ls, G = _setup(args)
    n = len(json.loads((out / SETTINGS_FILE).read_text())["targets"])
    targets = _targets(args, G, n)
    rows = read_rows(out / "space_comparison_per_image.csv")
    pn = _pn_stats(ls, G, QUICK if args.quick else FULL) if any(r["space"] == "PN" for r in rows) else None
    filled = fill_identity(out, G, targets, _identity(args), pn_stats=pn)
    summarize(out, [s for s in SPACE_ORDER if any(r["space"] == s for r in rows)], n)
    print((out / "space_comparison.md").read_text())
    print(f"scored {filled} images; wrote {args.out}/space_comparison_per_image.csv, space_comparison.csv, .md")


def cmd_paired(args) -> None:
    from .paired_statistics import run_paired_statistics

    others = args.b.split(",") if args.b else None
    run_paired_statistics(Path(args.out), args.a, others, abs_alpha=args.alpha, n_targets=args.n)
    print((Path(args.out) / "paired_statistics.md").read_text())
    print(f"wrote {args.out}/paired_statistics.csv and .md")


def cmd_invert(args) -> None:
    from safetensors.torch import save_file

    from latentspaces.images import save_images
    from optimizers import HybridInverter

    from .space_comparison import build_space

    ls, G = _setup(args)
    targets = _targets(args, G, args.n or 8)
    pn = ls.PNStats.fit(G, n_samples=QUICK["pn_samples"]) if args.space == "PN" else None
    space = build_space(args.space, G, pn)
    perceptual = _perceptual(args, G)
    res = HybridInverter(space, steps=args.steps or 200, lr=args.lr or 0.05, lambda_per=(args.lambda_per or 0.0) if perceptual else 0,
                         lambda_reg=0.0, perceptual=perceptual).invert(targets, seed=args.seed, init="mean")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu().contiguous() for k, v in res.code.items()}, str(out / "codes.safetensors"),
              metadata={"space": args.space, "generator": str(args.generator)})
    save_images(torch.cat([targets, res.images]), out / "inversion.png", nrow=len(targets))
    print(f"{args.space}: final MSE {res.history['mse'][-1].mean():.4f}; wrote {out}/codes.safetensors, inversion.png")


def cmd_edit(args) -> None:
    from safetensors import safe_open

    from latentspaces.directions import load_directions
    from latentspaces.images import save_images

    from .space_comparison import build_space

    ls, G = _setup(args)
    with safe_open(args.codes, framework="pt") as f:
        space_name = (f.metadata() or {}).get("space", args.space)
        code = ls.Code(**{k: f.get_tensor(k).to(args.device) for k in f.keys()})
    pn = ls.PNStats.fit(G, n_samples=QUICK["pn_samples"]) if space_name == "PN" else None
    space = build_space(space_name, G, pn)
    directions = load_directions(args.direction, kind=args.kind)
    d = directions[args.index]
    alphas = [float(a) for a in args.alphas.split(",")]
    with torch.no_grad():
        rows = torch.stack([space.synthesize(space.edit(code, d, a)) for a in alphas], dim=1)  # [N, A, 3, R, R]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_images(rows.flatten(0, 1), out / f"edit_{d.name}.png", nrow=len(alphas))
    print(f"wrote {out}/edit_{d.name}.png ({len(code)} codes x alphas {alphas})")


def cmd_directions(args) -> None:
    from latentspaces.directions import ganspace, random_directions, save_directions, sefa

    ls, G = _setup(args)
    if args.method == "ganspace":
        dirs = ganspace(G, n_samples=args.samples, n_components=args.count, kind=args.kind, seed=args.seed,
                        scale_by_std=True)
        if args.kind == "z":
            for d in dirs:
                d.vector = d.vector * d.meta["std"]
    elif args.method == "sefa":
        dirs = sefa(G, n_components=args.count)
    else:
        dirs = random_directions(args.count, G.z_dim if args.kind == "z" else G.w_dim, kind=args.kind, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.method}_{args.kind if args.method != 'sefa' else 'w'}.safetensors"
    save_directions(path, dirs)
    print(f"wrote {len(dirs)} {args.method} directions to {path}")


COMP_QUICK = dict(targets=8, fz_steps=100, fz_lr=0.05, pivot_steps=100, tune_steps=100, directions=3,
                  direction_samples=50_000)
COMP_FULL = dict(targets=64, fz_steps=1200, fz_lr=0.01, pivot_steps=450, tune_steps=350, directions=5,
                 direction_samples=300_000)


def cmd_compensation(args) -> None:
    from encoders import load_encoder

    from .compensation import run_compensation_comparison
    from .identity_curves import edit_directions

    ls, G = _setup(args)
    cfg = COMP_QUICK if args.quick else COMP_FULL
    targets = _targets(args, G, args.n or cfg["targets"])
    models = {"base": load_encoder(args.base_encoder, args.device), "sdic": load_encoder(args.sdic, args.device),
              "f": load_encoder(args.f_encoder, args.device)}
    perceptual = _perceptual(args, G)
    lam = (0.0 if args.quick else 1.0) if args.lambda_per is None else args.lambda_per
    settings = {
        "pti": dict(pivot_steps=args.pivot_steps or cfg["pivot_steps"], tune_steps=args.tune_steps or cfg["tune_steps"],
                    perceptual=perceptual,
                    lambda_per=1.0 if perceptual is not None else 0.0),
        "fzplus": dict(steps=args.steps or cfg["fz_steps"], lr=args.lr or cfg["fz_lr"],
                       lambda_per=lam if perceptual is not None else 0.0, lambda_reg=0.0, perceptual=perceptual),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = World.current()
    directions = world.main_first(lambda: edit_directions(G, out, cfg["directions"], cfg["direction_samples"],
                                                          args.seed))
    t = time.time()
    run_compensation_comparison(out, G, targets, models, directions, settings, perceptual, _identity(args))
    if not world.main:
        return
    print((out / "compensation_comparison.md").read_text())
    print(f"wrote {out}/compensation_comparison.csv, .md, compensation_grid.png ({time.time() - t:.0f} s)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="latentspaces", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p, quick=True):
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--generator", default="default", help="'default' or a checkpoint path (.pt, .pkl, .safetensors)")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--seed", type=int, default=0)
        if quick:
            p.add_argument("--quick", action="store_true", help="minutes on a CPU: 8 targets, 100 steps")
        p.add_argument("--targets", default=None, help="'heldout' (default) or comma-separated image files/folders")
        # --n-targets, not only --n: torchrun's parser takes --n for an abbreviation of its own --nnodes
        p.add_argument("--n-targets", "--n", dest="n", type=int, default=None, help="number of held-out targets")
        p.add_argument("--steps", type=int, default=None)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--lambda-per", type=float, default=None,
                       help="perceptual weight in the loss (default 0 with --quick, else 1; D-features scale)")
        p.add_argument("--perceptual", default="d-features", help="d-features | lpips-vgg | lpips-alex | none")
        p.add_argument("--identity", default="dlib", help="dlib | facenet | none")
        p.add_argument("--spaces", default=None, help="comma-separated space names")

    p = sub.add_parser("compare", help="invert targets into every space; table + grid")
    common(p)
    p.add_argument("--chunk", type=int, default=8, help="images inverted together (results saved per chunk)")
    p.add_argument("--init", choices=["mean", "encoder"], default="mean",
                   help="start from w_avg (and its counterparts) or from the encoders (F spaces: F encoder; "
                        "W+, W, S, PN: W+ encoder; Z, Z+: mean)")
    p.add_argument("--f-encoder", default="default-f", help="F encoder name or file (--init encoder)")
    p.add_argument("--wplus-encoder", default="default-wplus", help="W+ encoder name or file (--init encoder)")
    p.add_argument("--lambda-reg", type=float, default=0.0, help="weight of mean((f - f0)^2) with --init encoder")
    p.set_defaults(fn=cmd_compare, sharded=True)
    p = sub.add_parser("identity-curves", help="identity vs edit step per space; curves + robustness grid")
    common(p)
    p.add_argument("--chunk", type=int, default=8, help="images inverted together (as in compare; shared codes)")
    p.set_defaults(fn=cmd_identity_curves, sharded=True)
    p = sub.add_parser("compensation", help="base W+ encoder vs SDIC vs PTI vs F/Z+ (SDIC's Table 2)")
    common(p)
    p.add_argument("--base-encoder", default="default-wplus", help="W+ encoder name or file")
    p.add_argument("--sdic", default="default-sdic", help="SDIC head name or file")
    p.add_argument("--f-encoder", default="default-f", help="F encoder name or file")
    p.add_argument("--pivot-steps", type=int, default=None, help="PTI pivot steps (quick 100, full 450)")
    p.add_argument("--tune-steps", type=int, default=None, help="PTI tuning steps (quick 100, full 350)")
    p.set_defaults(fn=cmd_compensation, sharded=True)
    p = sub.add_parser("score-identity", help="fill in the identity of a compare folder inverted with --identity none")
    p.add_argument("--out", required=True, help="a folder written by compare")
    p.add_argument("--generator", default="default", help="the generator the folder was inverted with")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--targets", default=None, help="the targets the folder was inverted with (as in compare)")
    p.add_argument("--identity", default="dlib", help="dlib | facenet")
    p.add_argument("--quick", action="store_true", help="the folder was made with --quick (P_N statistics of 100k samples)")
    p.set_defaults(fn=cmd_score_identity)
    p = sub.add_parser("paired", help="paired tests of one space against others on the rows already in --out")
    p.add_argument("--out", required=True, help="a folder written by compare and/or identity-curves")
    p.add_argument("--a", default="FZPlus", help="the space compared against the others")
    p.add_argument("--b", default=None, help="comma-separated spaces (default: every other space in --out)")
    p.add_argument("--alpha", type=float, default=2.0, help="|alpha| of the edits compared (identity curves)")
    p.add_argument("--n", type=int, default=None, help="use targets 0 .. n-1 only (default: all)")
    p.set_defaults(fn=cmd_paired)

    p = sub.add_parser("invert", help="invert images into one space")
    common(p, quick=False)
    p.add_argument("--space", default="FZPlus")
    p.set_defaults(fn=cmd_invert)
    p = sub.add_parser("edit", help="edit inverted codes along a direction")
    p.add_argument("--out", required=True)
    p.add_argument("--codes", required=True, help="codes.safetensors written by `invert`")
    p.add_argument("--direction", required=True, help="direction file (latentspaces .safetensors or e4e .pt)")
    p.add_argument("--index", type=int, default=0, help="which direction of the file")
    p.add_argument("--kind", default=None, help="kind of a foreign direction file: z or w")
    p.add_argument("--space", default="FZPlus", help="space of the codes when the file does not say")
    p.add_argument("--alphas", default="-2,-1,0,1,2", help="comma-separated; write --alphas=-2,0,2 (the = keeps argparse from reading -2 as an option)")
    p.add_argument("--generator", default="default")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(fn=cmd_edit)
    p = sub.add_parser("directions", help="find directions (GANSpace, SeFa, random) and save them")
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=["ganspace", "sefa", "random"], default="ganspace")
    p.add_argument("--kind", choices=["z", "w"], default="w")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generator", default="default")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(fn=cmd_directions)
    return ap


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if not getattr(args, "sharded", False):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise SystemExit(f"`{args.command}` runs as one process; only compare, identity-curves and "
                             "compensation shard over torchrun ranks")
        args.fn(args)
        return
    world, args.device = init_world(args.device)
    try:
        args.fn(args)
    finally:
        if world.size > 1:
            close_world()


if __name__ == "__main__":
    main(sys.argv[1:])
