"""`latentspaces app`: the editor in the browser (photo -> faces -> inversion -> sliders -> edited photo).

    latentspaces app --open                                # http://127.0.0.1:7860, this machine only
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

import latentspaces as ls
from encoders import COMPENSATION_HEADS, FEncoder, load_encoder, load_head
from encoders.heads import compensate
from latentspaces import assets
from latentspaces.interfaces import CodeInitializer
from latentspaces.progress import status
from latentspaces.spaces import SPACE_ORDER, build_space

from ..app import Editor, serve
from ..app.editor import SLIDER_COMPONENTS, SLIDER_SAMPLES
from ..app.server import check_address
from ..argtypes import UsageError, encoder_spec, existing_file, int_in, sample_count
from ..config import Config, add_config_flags, option
from ..studies.inversions import starting_encoder
from .common import add_machine_flags, load_generator

NAME = "app"
HELP = "the editor in the browser: photo -> faces -> inversion -> sliders -> edited photo"
RANKS = "one"       # one process; refused under torchrun


@dataclass(frozen=True)
class AppConfig(Config):
    """Where the editor serves and which sliders it shows."""

    host: str = option("127.0.0.1", "address to serve on (127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                                    "network)")
    port: int = option(7860, "port (0: any free port)", type=int_in(0, 65535))
    components: int = option(SLIDER_COMPONENTS, "GANSpace components shown", type=int_in(1, 50))
    direction_samples: int = option(SLIDER_SAMPLES, "W samples of the sliders' GANSpace PCA", type=sample_count)


CONFIG = AppConfig       # the command's numbers; its fields make the flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_machine_flags(p, out=False)
    add_config_flags(p, AppConfig)
    p.add_argument("--open", action="store_true", help="open the page in this machine's browser")
    p.add_argument("--directions", type=existing_file, nargs="+", default=(),
                   help="direction files to add as sliders (e.g. InterfaceGAN's; latentspaces .safetensors or "
                        "e4e .pt)")
    p.add_argument("--wplus-encoder", type=encoder_spec, default=None,
                   help="W+ encoder name or file: the paper recipe's start and the heads' base (default with the "
                        f"default generator: {assets.DEFAULT_WPLUS_ENCODER})")
    p.add_argument("--f-encoder", type=encoder_spec, default=None,
                   help="F encoder name or file: the paper recipe's start of F spaces (default with the default "
                        f"generator: {assets.DEFAULT_F_ENCODER})")
    for head in COMPENSATION_HEADS:
        p.add_argument(f"--{head}", type=encoder_spec, default=None,
                       help=f"{head} head name or file (default with the default generator: {assets.default_head(head)})")


def check(args: argparse.Namespace) -> None:
    """The address can be listened on (the models take seconds to load; a taken port is said first)."""
    c = AppConfig.from_args(args)
    check_address(c.host, c.port)


def _fitting(model: torch.nn.Module, spec: str, G: ls.Generator, base: Optional[torch.nn.Module] = None) -> None:
    """Refuse an encoder or head that does not fit G, in one line naming the file: it runs once on a gray face
    (a W+ encoder must predict [num_ws, w_dim], an F encoder G's f, a head must correct `base`'s codes)."""
    x = torch.zeros(1, 3, G.resolution, G.resolution, device=next(G.parameters()).device)
    try:
        with torch.no_grad():
            if base is not None:
                compensate(G, base, model, x)
            elif isinstance(model, FEncoder):
                model.init_code(build_space("FWPlus", G), x)
            else:
                ws = model(x)
                if tuple(ws.shape) != (1, G.num_ws, G.w_dim):
                    raise ValueError(f"it predicts W+ codes {tuple(ws.shape[1:])}, the generator takes "
                                     f"{(G.num_ws, G.w_dim)}")
    except (RuntimeError, ValueError, KeyError) as e:
        raise UsageError(f"{spec} does not fit the {G.resolution} px generator: {' '.join(str(e).split())[:200]}; "
                         "train one for it (docs/training.md)") from None


def _loaded(spec: Optional[str], G: ls.Generator, device: str, base: Optional[torch.nn.Module] = None,
            method: Optional[str] = None):
    """The encoder `spec`, or the head of `method` (None: None), checked to fit G."""
    if spec is None:
        return None
    model = load_encoder(spec, device) if method is None else load_head(spec, device, method)
    _fitting(model, spec, G, base)
    return model


def run(args: argparse.Namespace) -> None:
    c = AppConfig.from_args(args)
    G = load_generator(args)
    if c.components > G.w_dim:
        raise UsageError(f"--components {c.components}: GANSpace finds at most w_dim = {G.w_dim} directions of "
                         "this generator")
    shipped = args.generator == assets.DEFAULT_GENERATOR   # the shipped encoders and heads are the default model's
    base = _loaded(args.wplus_encoder or (assets.DEFAULT_WPLUS_ENCODER if shipped else None), G, args.device)
    f_encoder = _loaded(args.f_encoder or (assets.DEFAULT_F_ENCODER if shipped else None), G, args.device)
    heads = {}
    for flag in COMPENSATION_HEADS:
        shipped_head = assets.default_head(flag)
        spec = getattr(args, flag) or (shipped_head if shipped and assets.installed(shipped_head) else None)
        if spec is not None and base is None:
            raise UsageError(f"--{flag} corrects a W+ encoder's codes: pass --wplus-encoder FILE too")
        head = _loaded(spec, G, args.device, base, flag)
        if head is not None:
            heads[type(head).__name__] = head
    loaded = {"f": f_encoder, "wplus": base}   # the paper recipe's starts, by the rule of `recipe_encoders`
    encoders: Dict[str, CodeInitializer] = {s: loaded[starting_encoder(s)] for s in SPACE_ORDER
                                            if loaded.get(starting_encoder(s)) is not None}
    status(f"finding the sliders' directions ({c.components} GANSpace components from {c.direction_samples:,} "
           "W samples, SeFa, random) ...")
    # the name the replay bundles' command uses: a shipped name as it is, a file by its absolute path
    name = args.generator if args.generator in assets.names("generator") else str(Path(args.generator).resolve())
    editor = Editor.for_generator(G, name, args.directions, components=c.components, samples=c.direction_samples,
                                  device=args.device, encoders=encoders, base_encoder=base, heads=heads)
    editor.warm_up()
    serve(editor, c.host, c.port, open_browser=args.open)
