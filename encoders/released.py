"""The released checkpoints of the pSp family (pSp, e4e, HFGI, SDIC) and BDInvert's encoder, read as data into
this project's networks.

The papers' trainers save `torch.save({'state_dict': net.state_dict(), 'opts': vars(opts), 'latent_avg': ...})`,
the network's parts being prefixes of the state dict's keys:

    encoder.*      e4e's Encoder4Editing ("Designing an Encoder for StyleGAN Image Manipulation") or pSp's
                   GradualStyleEncoder, told apart by opts['encoder_type'] (the weights have the same names)
    decoder.*      the rosinality StyleGAN2 generator (read by `latentspaces.load_generator`)
    DIP.*, SAF.*   SDIC's DIPN and DICN (`encoders.sdic_released.SDICReleased`; "Spatial-Contextual Discrepancy
                   Information Compensation for GAN Inversion"); lpips_loss.*, id_loss.*: its training losses
    residue.*      HFGI's consultation encoder Ec (`ResidualEncoder`; "High-Fidelity GAN Inversion for Image
                   Attribute Editing", Sec. 3.2)
    grid_align.*   HFGI's adaptive distortion alignment ADA (`ResidualAligner`, Sec. 3.3)
    latent_avg     the generator's mean w, [w_dim] or repeated per layer [num_ws, w_dim]

Files are read with the weights-only torch.load (`latentspaces.torch_files`: no code in them runs, the zip
records' CRC-32 checked). Each released tensor is renamed to this project's name, and the whole state is
checked before anything is loaded (`load_released_state`: every name present, every shape as the network
built from the file's sizes, every tensor floating (step counters integer), finite and bounded). A reader
that uses some parts of a file says which parts it left and what reads them (a `UserWarning`), never
silently.

Checked against the official code (random weights, saved as the release saves, read here): e4e's ws bit
for bit; HFGI's fused 1024 px image within float rounding (BENCHMARKS.md, "Released checkpoints").
"""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch

from latentspaces.errors import CheckpointError
from latentspaces.file_rules import FLOAT_DTYPES, check_tensor
from latentspaces.torch_files import load_torch_file

from .config_checks import conv_layer_resolution
from .f_encoder import FEncoder
from .hfgi import HFGI
from .sdic_released import SDIC_INPUT_SIZE, SDIC_LAYER, SDIC_LAYER_RESOLUTION, SDICReleased
from .wplus_encoder import WPlusEncoder

# What each part of a released file is, and which reader of this project reads it.
PARTS = {
    "encoder": "the W+ encoder: encoders.load_encoder",
    "decoder": "the generator: latentspaces.load_generator",
    "residue": "HFGI's consultation encoder: encoders.load_head",
    "grid_align": "HFGI's ADA: encoders.load_head",
    "DIP": "SDIC's DIPN: encoders.load_head",
    "SAF": "SDIC's DICN: encoders.load_head",
    "lpips_loss": "a training loss's network: not read",
    "id_loss": "a training loss's network: not read",
}

# HFGI's released layout: the fused layer is the output of rosinality's convs[6] (`if i == 7` in its generator's
# loop: the first conv of the 64 px block), read at 256 px (its data pipeline and its F.interpolate(..., 256)).
HFGI_LAYER, HFGI_LAYER_RESOLUTION, HFGI_INPUT_SIZE = "b64.conv0", 64, 256

# released prefix -> this project's prefix (HFGI's psp_encoders.ResidualEncoder `residue`, ResidualAligner `grid_align`)
HFGI_PREFIXES: Sequence[Tuple[str, str]] = (
    ("residue.conv_layer1.", "consultation.trunk.0."), ("residue.conv_layer2.", "consultation.trunk.1."),
    ("residue.conv_layer3.", "consultation.trunk.2."), ("residue.condition_scale3.", "consultation.scale."),
    ("residue.condition_shift3.", "consultation.shift."), ("grid_align.conv_layer1.", "ada.stem."),
    ("grid_align.conv_layer2.", "ada.down.0."), ("grid_align.conv_layer3.", "ada.down.1."),
    ("grid_align.conv_layer4.", "ada.down.2."), ("grid_align.dconv_layer1.", "ada.up.0."),
    ("grid_align.dconv_layer2.", "ada.up.1."), ("grid_align.dconv_layer3.", "ada.up.2."),
)


def renamed(key: str, prefixes: Sequence[Tuple[str, str]]) -> str:
    """`key` with the first of `prefixes`' (from, to) pairs whose `from` starts it replaced (unchanged if none)."""
    for old, new in prefixes:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def load_released_state(network: torch.nn.Module, state: Mapping[str, object], where: str, what: str,
                        names: Optional[Mapping[str, str]] = None) -> torch.nn.Module:
    """`network` with the weights of `state` (keys already in the network's names), checked whole first.

    `names`: this project's key -> the released key, for the messages. Refused with a CheckpointError naming
    the file and the tensor: a missing, unexpected or misshapen tensor; a dtype other than a floating one (the
    network's own dtype for an integer buffer such as BatchNorm's step counter); a NaN, an Inf or a magnitude
    over `latentspaces.file_rules.MAX_ABS_WEIGHT`. Floating weights are read as float32; nothing else is cast.
    """
    names = names or {}
    own = network.state_dict()
    missing = sorted(names.get(k, k) for k in own if k not in state)
    extra = sorted(names.get(k, k) for k in state if k not in own)
    wrong = sorted(names.get(k, k) for k in own if k in state and isinstance(state[k], torch.Tensor)
                   and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or extra or wrong:
        raise CheckpointError(f"{where}: the {what} does not match the released network: missing {missing[:4]}, "
                              f"unexpected {extra[:4]}, wrong shapes {wrong[:4]}")
    checked = {}
    for k, value in state.items():
        wanted = FLOAT_DTYPES if own[k].is_floating_point() else (own[k].dtype,)
        if isinstance(value, torch.Tensor) and value.dtype not in wanted:
            raise CheckpointError(f"{where}: {names.get(k, k)} has dtype {_dtype_name(value.dtype)}; expected "
                                  f"{', '.join(_dtype_name(d) for d in wanted)}. Refusing to cast")
        checked[k] = check_tensor(names.get(k, k), value, tuple(own[k].shape), where, dtypes=wanted).to(own[k].dtype)
    network.load_state_dict(checked)
    return network.eval()


def checked_latent_avg(avg: object, where: str) -> torch.Tensor:
    """latent_avg as [w_dim] float32: e4e stores one w_avg, or the same row repeated per layer [num_ws, w_dim]."""
    if avg is None:
        raise CheckpointError(f"{where}: no 'latent_avg'; pass the checkpoint's top-level dict (it stores latent_avg "
                              "beside state_dict)")
    if not isinstance(avg, torch.Tensor) or avg.dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{where}: latent_avg is {getattr(avg, 'dtype', type(avg).__name__)}; expected a floating "
                              "tensor. Refusing to cast")
    if avg.ndim not in (1, 2):
        raise CheckpointError(f"{where}: latent_avg has shape {list(avg.shape)}; expected [w_dim] or [num_ws, w_dim]")
    avg = check_tensor("latent_avg", avg, None, where).float()
    if avg.ndim == 2 and not torch.equal(avg, avg[:1].expand_as(avg)):
        raise CheckpointError(f"{where}: latent_avg has differing rows; e4e's is one w_avg repeated per layer")
    return avg[0] if avg.ndim == 2 else avg


def wplus_from_state(state: dict, codes: str, where: str, num_ws: Optional[int] = None,
                     latent_avg: bool = True) -> WPlusEncoder:
    """An ir_se50 WPlusEncoder with the encoder weights of an e4e (`codes='offsets'`) or pSp (`codes='rows'`)
    state dict (keys 'encoder.*', or just the encoder part); 'latent_avg' becomes `w_avg` (required when
    `latent_avg`, else w_avg stays 0: pSp trained without start_from_latent_avg). The two encoders have the
    same weight names and shapes: only the checkpoint's opts['encoder_type'] tells them apart."""
    what = {"offsets": "e4e Encoder4Editing", "rows": "pSp GradualStyleEncoder"}[codes]
    enc_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")} or \
        {k: v for k, v in state.items() if k != "latent_avg"}
    if "input_layer.0.weight" not in enc_state or "styles.0.linear.weight" not in enc_state:
        raise CheckpointError(f"not an {what} state dict: expected keys 'encoder.input_layer.0.weight' and "
                              "'encoder.styles.0.linear.weight' (the ResNet/last-layer-into-W backbones are "
                              "different architectures and are not read)")
    n_styles = len({k.split(".")[1] for k in enc_state if k.startswith("styles.")})
    if num_ws is not None and num_ws != n_styles:
        raise CheckpointError(f"the {what} predicts {n_styles} ws, the generator needs {num_ws}")
    n_units = len({k.split(".")[1] for k in enc_state if k.startswith("body.")})
    if n_units != 24:
        raise CheckpointError(f"the {what} backbone has {n_units} units; only IR-SE50 (24 units) is supported "
                              "(IR-SE100/152 and the ResNet34 backbone are not)")
    style = enc_state["styles.0.linear.weight"]
    if not isinstance(style, torch.Tensor) or style.ndim != 2:
        raise CheckpointError(f"{where}: encoder.styles.0.linear.weight is not a matrix [w_dim, channels]")
    enc = WPlusEncoder(n_styles, style.shape[0], backbone="ir_se50", style_channels=style.shape[1], codes=codes)
    if latent_avg or state.get("latent_avg") is not None:
        enc_state["w_avg"] = checked_latent_avg(state.get("latent_avg"), where)
    else:
        enc_state["w_avg"] = torch.zeros(style.shape[0])
    return load_released_state(enc, enc_state, where, what,
                               names={k: f"encoder.{k}" for k in enc_state if k != "w_avg"} | {"w_avg": "latent_avg"})


def from_e4e_state_dict(state: dict, num_ws: Optional[int] = None, where: str = "the e4e state dict") -> WPlusEncoder:
    """An ir_se50 WPlusEncoder (w0 + offsets) with the encoder weights of an e4e checkpoint's state dict, its
    'latent_avg' (from the checkpoint's top level or its state dict) as `w_avg` (`wplus_from_state`)."""
    return wplus_from_state(state, "offsets", where, num_ws)


def read_psp_checkpoint(path: str, what: str) -> Tuple[Dict[str, object], dict]:
    """(state: the state dict with 'latent_avg' beside its keys when the file has one, opts: {} when absent)
    of a pSp-family checkpoint; CheckpointError unless it is a dict with a 'state_dict' dict of tensors."""
    ckpt = load_torch_file(path, what, hint="pSp-family checkpoints store tensors and an 'opts' dict of plain values.")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a {what} (expected a dict with 'state_dict')")
    if not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(f"{path}: state_dict is a {type(ckpt['state_dict']).__name__}, expected a dict of "
                              f"tensors (a {what})")
    state = dict(ckpt["state_dict"])
    if "latent_avg" in ckpt and "latent_avg" not in state:
        state["latent_avg"] = ckpt["latent_avg"]
    opts = ckpt.get("opts")
    return state, opts if isinstance(opts, dict) else {}


def file_parts(state: Mapping[str, object]) -> Tuple[str, ...]:
    """The parts of a released state dict: the first component of its dotted keys, sorted ('latent_avg' aside)."""
    return tuple(sorted({k.split(".")[0] for k in state if isinstance(k, str) and "." in k}))


def note_parts_left(path: str, state: Mapping[str, object], read: Sequence[str]) -> None:
    """Warn which parts of the file at `path` this reader left, and what reads each (nothing when all were read)."""
    left = [p for p in file_parts(state) if p not in read]
    if left:
        said = "; ".join(f"{p}.* ({PARTS.get(p, 'not read by this project')})" for p in left)
        warnings.warn(f"{os.path.basename(path)}: read {', '.join(f'{p}.*' for p in read)}; left {said}", stacklevel=3)


def e4e_from_checkpoint(state: dict, opts: dict, path: str, num_ws: Optional[int] = None) -> WPlusEncoder:
    """The e4e encoder of a read checkpoint (`read_psp_checkpoint`), refusing another opts['encoder_type']."""
    encoder_type = opts.get("encoder_type")
    if encoder_type is not None and encoder_type != "Encoder4Editing":
        raise CheckpointError(f"{path}: opts['encoder_type'] is {encoder_type!r}, not 'Encoder4Editing' (a pSp "
                              "GradualStyleEncoder has the same weight names but predicts each w row independently, "
                              "not w0 + offsets: read it with load_psp_encoder)")
    return from_e4e_state_dict(state, num_ws, where=path)


def psp_from_checkpoint(state: dict, opts: dict, path: str, num_ws: Optional[int] = None) -> WPlusEncoder:
    """The pSp encoder of a read checkpoint: opts['encoder_type'] 'GradualStyleEncoder' over IR-SE50, RGB in."""
    encoder_type = opts.get("encoder_type", "GradualStyleEncoder")
    if encoder_type != "GradualStyleEncoder":
        raise CheckpointError(f"{path}: opts['encoder_type'] is {encoder_type!r}; read here: 'GradualStyleEncoder' "
                              "(pSp) and 'Encoder4Editing' (e4e, load_e4e_encoder); the last-layer-into-W encoders "
                              "are other networks")
    channels = opts.get("input_nc", 3)
    if channels != 3 or opts.get("label_nc", 0):
        raise CheckpointError(f"{path}: this pSp encoder reads {channels} input channels (label_nc "
                              f"{opts.get('label_nc', 0)}: sketches or segmentation maps), not RGB photos; it does not "
                              "invert images")
    from_avg = bool(opts.get("start_from_latent_avg", True))
    encoder = wplus_from_state(state, "rows", path, num_ws, latent_avg=from_avg)
    if not from_avg:
        with torch.no_grad():
            encoder.w_avg.zero_()   # pSp adds latent_avg only when it trained from it
    return encoder


def load_e4e_encoder(path: str, num_ws: Optional[int] = None) -> WPlusEncoder:
    """Read the encoder of an e4e checkpoint (or of HFGI's, which holds e4e's) into an ir_se50 WPlusEncoder."""
    state, opts = read_psp_checkpoint(path, "e4e checkpoint")
    encoder = e4e_from_checkpoint(state, opts, path, num_ws)
    note_parts_left(path, state, read=("encoder",))
    return encoder


def load_psp_encoder(path: str, num_ws: Optional[int] = None) -> WPlusEncoder:
    """Read the encoder of a pSp checkpoint (FFHQ encoding, toonify, super-resolution, ...: RGB photos in) into a
    WPlusEncoder with codes='rows'; ws = rows + latent_avg when opts['start_from_latent_avg'] (pSp's forward),
    the rows alone otherwise."""
    state, opts = read_psp_checkpoint(path, "pSp checkpoint")
    encoder = psp_from_checkpoint(state, opts, path, num_ws)
    note_parts_left(path, state, read=("encoder",))
    return encoder


def load_psp_family_encoder(path: str, num_ws: Optional[int] = None) -> WPlusEncoder:
    """The W+ encoder of an e4e, HFGI or pSp checkpoint (read once), by its opts['encoder_type'] (e4e when the
    opts do not say)."""
    state, opts = read_psp_checkpoint(path, "pSp-family checkpoint")
    read = psp_from_checkpoint if opts.get("encoder_type") == "GradualStyleEncoder" else e4e_from_checkpoint
    encoder = read(state, opts, path, num_ws)
    note_parts_left(path, state, read=("encoder",))
    return encoder


def hfgi_from_state(state: Mapping[str, object], where: str) -> HFGI:
    """The HFGI head of a released HFGI state dict (keys 'residue.*', 'grid_align.*', 'encoder.*' for the code
    shape): ADA and Ec at the released sizes, fusing b64.conv0 at 256 px with the released render resize."""
    for part in ("residue", "grid_align"):
        if not any(isinstance(k, str) and k.startswith(part + ".") for k in state):
            raise CheckpointError(f"{where}: no '{part}.*' weights: not an HFGI checkpoint (HFGI's files hold "
                                  "encoder.*, decoder.*, residue.* and grid_align.*)")
    styles = {k.split(".")[2] for k in state if isinstance(k, str) and k.startswith("encoder.styles.")}
    scale = state.get("residue.condition_scale3.2.weight")
    w_avg = state.get("latent_avg")
    if not styles or not isinstance(scale, torch.Tensor) or scale.ndim != 4 or not isinstance(w_avg, torch.Tensor):
        raise CheckpointError(f"{where}: the code shape (encoder.styles.*, latent_avg) or the fused layer's channels "
                              "(residue.condition_scale3.2.weight) cannot be read")
    head = HFGI(len(styles), int(w_avg.shape[-1]), HFGI_LAYER, int(scale.shape[0]), HFGI_LAYER_RESOLUTION,
                HFGI_INPUT_SIZE, width=1.0, ada_decoder_units=3, rendered_resize="bilinear")
    ours = {renamed(k, HFGI_PREFIXES): v for k, v in state.items()
            if isinstance(k, str) and k.split(".")[0] in ("residue", "grid_align")}
    back = [(new, old) for old, new in HFGI_PREFIXES]
    names = {k: renamed(k, back) for k in [*head.state_dict(), *ours]}
    return load_released_state(head, ours, where, "HFGI head", names)


def load_hfgi_head(path: str) -> HFGI:
    """The HFGI head (ADA + Ec) of a released HFGI checkpoint; its e4e encoder is read by `load_e4e_encoder`,
    its generator by `latentspaces.load_generator`."""
    state, _ = read_psp_checkpoint(path, "HFGI checkpoint")
    head = hfgi_from_state(state, path)
    note_parts_left(path, state, read=("residue", "grid_align"))
    return head


BDINVERT_LAYER = "b16.conv0"   # the released FFHQ 1024 px encoder's layer (genforce x03, 'basesize16')
BDINVERT_BLOCK = 10            # Sequential entries per pooling block of encoder_simple: 3 x (conv, BN, LReLU), pool


def _bdinvert_to_ours(key: str) -> str:
    """'model.N.rest' -> 'blocks.{N // 10}.{N % 10}.rest' in the three blocks, 'head.{N - 30}.rest' after."""
    m = re.fullmatch(r"model\.(\d{1,3})\.(.+)", key) if isinstance(key, str) else None
    if m is None:
        return key   # reported as unexpected
    n, rest = int(m.group(1)), m.group(2)
    blocks = 3 * BDINVERT_BLOCK
    return f"blocks.{n // BDINVERT_BLOCK}.{n % BDINVERT_BLOCK}.{rest}" if n < blocks else f"head.{n - blocks}.{rest}"


def _ours_to_bdinvert(key: str) -> str:
    """The inverse of `_bdinvert_to_ours` (for the messages)."""
    if m := re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(.+)", key):
        return f"model.{BDINVERT_BLOCK * int(m.group(1)) + int(m.group(2))}.{m.group(3)}"
    if m := re.fullmatch(r"head\.(\d+)\.(.+)", key):
        return f"model.{3 * BDINVERT_BLOCK + int(m.group(1))}.{m.group(2)}"
    return key


def load_bdinvert_encoder(path: str, layer: str = BDINVERT_LAYER) -> FEncoder:
    """BDInvert's base-code encoder (`encoder_simple`, "GAN Inversion for Out-of-Range Images with Geometric
    Transformations") from its training checkpoint `{'encoder': state, 'optimizer', 'scheduler', 'epoch'}` (or a
    bare state dict) into an FEncoder of layout 'released' that reads its input as BDInvert does (PIL Lanczos on
    the uint8 image: resize='lanczos'). The file does not record its layer: BDInvert's
    release predicts b16.conv0 of the 1024 px generator from 128 px; pass `layer` for another (b64.conv0 for a
    'basesize64' encoder, whose weights have the same shapes). Its flat `model.N` Sequential maps to
    `blocks.{N // 10}.{N % 10}` for the three pooling blocks and `head.{N - 30}` after them."""
    ckpt = load_torch_file(path, "BDInvert encoder", hint="BDInvert's encoder files store tensors and plain optimizer "
                           "and scheduler state.")
    state = ckpt.get("encoder", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "model.0.weight" not in state:
        raise CheckpointError(f"{path}: not a BDInvert encoder (expected {{'encoder': state}} with 'model.0.weight'; "
                              "BDInvert_Release's train_basecode_encoder.py writes it)")
    first, last = state["model.0.weight"], state.get("model.33.weight")
    widths = [state.get(f"model.{10 * b}.weight") for b in range(3)]
    if not all(isinstance(t, torch.Tensor) and t.ndim == 4 for t in (first, last, *widths)):
        raise CheckpointError(f"{path}: the encoder is not BDInvert's three-block encoder_simple (model.0, 10, 20 and 33 "
                              "must be conv weights)")
    encoder = FEncoder(int(last.shape[0]), conv_layer_resolution(layer), [int(w.shape[0]) for w in widths], layer,
                       layout="released", resize="lanczos")
    ours = {_bdinvert_to_ours(k): v for k, v in state.items()}
    names = {k: _ours_to_bdinvert(k) for k in [*encoder.state_dict(), *ours]}
    encoder = load_released_state(encoder, ours, path, "BDInvert encoder", names)
    left = sorted(str(k) for k in ckpt if k != "encoder") if "encoder" in ckpt else []
    if left:
        warnings.warn(f"{os.path.basename(path)}: read 'encoder'; left {', '.join(left)} (training state)", stacklevel=2)
    return encoder


# SDIC: released prefix -> this project's prefix (`SDICReleased`); below them the names are the release's own
SDIC_PREFIXES: Sequence[Tuple[str, str]] = (("DIP.", "dipn."), ("SAF.", "dicn."))

# Released keys of sub-networks the inference never runs (built by the official constructors, so present in every
# file, which the official loader reads with strict=True): dropped by `sdic_from_state`, matched from the start.
SDIC_UNUSED_KEYS: Tuple[str, ...] = (
    r"DIP\.(stem_2|stem_4|spx|spx_2|spx_4|semantic|agg)\.",   # built, never called by forward
    r"DIP\.hourglass_fusion\.conv1_up\.bn\.",                  # built with bn=False: never applied
    r"SAF\.(aff1|conv1|aff2|aff1d\.agg)\.",                    # built, never called by forward
)


def is_sdic_unused_key(key: str) -> bool:
    """True for a released key of a sub-network the inference never runs (`SDIC_UNUSED_KEYS`)."""
    return any(re.match(pattern, key) for pattern in SDIC_UNUSED_KEYS)


def _sdic_size(state: Mapping[str, object], key: str, ndim: int, dim: int, where: str) -> int:
    value = state.get(key)
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        raise CheckpointError(f"{where}: {key} is missing or not a {ndim}-D tensor; the SDIC head's sizes are read "
                              "from it")
    return int(value.shape[dim])


def sdic_from_state(state: Mapping[str, object], where: str) -> SDICReleased:
    """The SDIC head of a released SDIC state dict (keys 'DIP.*', 'SAF.*', 'latent_avg' for w_dim; other parts
    ignored): DIPN and DICN at the released layer, input size and the file's sizes (num_ws from SAF.aff1d.sen.3,
    C_l from SAF.semantic.3, condition_shift3's channels, w_dim from latent_avg, 512 without one), the released
    unused sub-networks dropped (`SDIC_UNUSED_KEYS`), every other tensor checked by `load_released_state`."""
    for part in ("DIP", "SAF"):
        if not any(isinstance(k, str) and k.startswith(part + ".") for k in state):
            raise CheckpointError(f"{where}: no '{part}.*' weights: not an SDIC checkpoint (SDIC's files hold "
                                  "encoder.*, SAF.*, decoder.*, DIP.* and latent_avg)")
    num_ws = _sdic_size(state, "SAF.aff1d.sen.3.weight", 3, 0, where)
    rows = _sdic_size(state, "SAF.aff1d.sen.0.weight", 3, 1, where)
    layer_channels = _sdic_size(state, "SAF.semantic.3.weight", 4, 0, where)
    shift_channels = _sdic_size(state, "SAF.condition_shift3.0.weight", 4, 0, where)
    w_avg = state.get("latent_avg")
    w_dim = 512   # the release's hard-coded row length (shift.view(N, -1, 512))
    if isinstance(w_avg, torch.Tensor) and w_avg.ndim in (1, 2):
        w_dim = int(w_avg.shape[-1])
        if w_avg.ndim == 2 and w_avg.shape[0] != num_ws:
            raise CheckpointError(f"{where}: latent_avg has {w_avg.shape[0]} rows, SAF.aff1d corrects {num_ws}")
    shift_size = math.isqrt(rows * w_dim // max(shift_channels, 1))
    if shift_channels * shift_size**2 != rows * w_dim:
        raise CheckpointError(f"{where}: SAF.aff1d reads {rows} rows of {w_dim}, which no square map of "
                              f"{shift_channels} channels fills (the release: 144 rows of 18 x 64 x 64)")
    try:
        head = SDICReleased(num_ws, w_dim, SDIC_LAYER, layer_channels, SDIC_LAYER_RESOLUTION, SDIC_INPUT_SIZE,
                            shift_channels, shift_size)
    except ValueError as e:
        raise CheckpointError(f"{where}: the SDIC head's sizes do not fit together: {e}") from None
    ours = {renamed(k, SDIC_PREFIXES): v for k, v in state.items()
            if isinstance(k, str) and k.split(".")[0] in ("DIP", "SAF") and not is_sdic_unused_key(k)}
    back = [(new, old) for old, new in SDIC_PREFIXES]
    names = {k: renamed(k, back) for k in [*head.state_dict(), *ours]}
    return load_released_state(head, ours, where, "SDIC head", names)


# A released file's head by the parts it holds: (the parts it reads, the reader of a state dict).
RELEASED_HEADS: Sequence[Tuple[Tuple[str, ...], Callable[[Mapping[str, object], str], torch.nn.Module]]] = (
    (("residue", "grid_align"), hfgi_from_state),
    (("DIP", "SAF"), sdic_from_state),
)


def load_released_head(path: str) -> torch.nn.Module:
    """The compensation head of a released checkpoint, found by the parts it holds (the file read once);
    CheckpointError naming the parts found when no reader knows them."""
    state, _ = read_psp_checkpoint(path, "released head checkpoint")
    parts = file_parts(state)
    for read, make in RELEASED_HEADS:
        if all(p in parts for p in read):
            head = make(state, path)
            note_parts_left(path, state, read)
            return head
    raise CheckpointError(f"{path}: no compensation head this project reads (parts: {', '.join(parts) or 'none'}; "
                          "read: HFGI's residue.* + grid_align.*, SDIC's DIP.* + SAF.*)")


__all__ = ["HFGI_PREFIXES", "PARTS", "checked_latent_avg", "file_parts", "from_e4e_state_dict", "hfgi_from_state",
           "load_e4e_encoder", "load_hfgi_head", "load_psp_encoder", "load_psp_family_encoder", "load_bdinvert_encoder", "BDINVERT_LAYER", "e4e_from_checkpoint", "psp_from_checkpoint", "load_released_head", "load_released_state", "note_parts_left",
           "read_psp_checkpoint", "renamed", "wplus_from_state", "SDIC_PREFIXES", "SDIC_UNUSED_KEYS",
           "is_sdic_unused_key", "sdic_from_state"]
