"""GradStyle: gradual residual modules and global alignment over a frozen W+ encoder, a compensation head.

"Gradual Residuals Alignment: A Dual-Stream Framework for GAN Inversion and Image Attribute Editing"
(GradStyle, Li et al.); a compensation head in the sense of `latentspaces.interfaces.CompensationHead`.
No code of the paper is public; this is our reading of its equations.

Reconstruction stream (Sec. 3.2). The frozen base encoder gives W+ = E(x) and its feature pyramid T_m
(`WPlusEncoder.pyramid`: e4e's FPN maps, coarse to fine). At each of M = 3 generator conv layers l_m, in
generator order (each stage sees the injections of the stages below it), with f_m^rec the layer's output:
    F_m   = E_res(W_T T_m, W_f f_m^rec)                       residual                       (Eq. 2)
    g_m   = sigmoid(W_g [f_m^rec, F_m])                        gate                           (Eq. 3)
    f~_m  = f_m^rec + g_m * F_m                                fused feature, replaces f_m    (Eq. 4)
    L_f   = sum_m ||g_m * F_m||_1                              residual sparsity              (Eq. 5)
Layers (`default_gradstyle_layers`): the paper (implementation details, 1024 px generator, N = 18)
injects residuals after the 3rd, 6th and 8th generator blocks. Blocks are counted from the 4 x 4 block
as the 1st (b4, b8, ..., b1024: 9 blocks at 1024 px), and "after block k" is the output of its last conv,
conv1: b16.conv1, b128.conv1 and b512.conv1 at 1024 px. A generator with B = log2(R) - 1 blocks takes
the blocks at the same relative depth, round(k * B / 9) for k = 3, 6, 8 (no ties occur): b8/b64/b128
at 256 px, b16/b64/b256 at 512 px, b8/b16/b32 on the 64 px default. Reading "after" as conv1 (the block's
finished feature) is our choice; the paper names blocks, not convs.
The pyramid's levels T_m (coarse to fine) feed the stages in generator order; W_T T_m is resized
bilinearly to the layer's side when the two differ (a 1x1 conv commutes with bilinear resizing, so this
equals resizing T_m first, at a fraction of the cost at 512 px).

Editing stream (Sec. 3.3). A second pass with W+ + alpha dW+; at stage m, with f_m^edi the edited
layer's output, a Global Alignment Module (GAM) aligns the residual to the edited geometry and the shared
gate fuses it:
    Q = W_q f^edi + P,  K = W_k F + P,  V = W_v F      flattened to H*W tokens, P the 2-D sinusoidal
                                                        position encoding                (Eqs. 6-7)
    A = softmax(top_mu(Q K^T / sqrt(d_k))) V            selective attention: per query, the top mu of
                                                        the scores kept, the rest set to -inf  (Eq. 8)
    F' = F + W_o A                                      per block; `gam_blocks` blocks          (Eq. 9)
    L_aligner = sum_m ||F'_m - F_m||_1                  trained on a perspective-warped F_m at
                                                        alpha = 0, F_m the target            (Eq. 10)
    f~^edi_m = f_m^edi + sigmoid(W_g [f_m^edi, F'_m]) * F'_m
Anchored alignment at edit time (not in the paper: our choice). `edit` uses
    F'_m = F_m + (GAM(f_m^edi, F_m) - GAM(f_m^rec, F_m))
with f_m^rec cached by `compensate`. At delta = 0 the edited features equal the reconstruction's bit for
bit, the bracket is exactly zero, so `edit(G, comp, 0)` returns `comp.image` exactly (also for a
trained head, and the value path has no bias, so an untrained head's edits are the base's edits
exactly). For a well-trained aligner GAM(f^rec, F) ~ F (Eq. 10 at zero warp), so the anchored F' ~
GAM(f^edi, F), the paper's. Training fits the raw GAM output, as in Eq. 10. Bitwise exactness assumes
deterministic kernels (CPU, or CUDA with deterministic algorithms).

Sizes: all "not in the paper: our choice" (the paper's appendix is not public), config fields:
- E_res per stage: 1x1 W_T (pyramid channels -> hidden_m) and 1x1 W_f (C_m -> hidden_m), summed (a linear
  map of the concatenation), LeakyReLU 0.2, two conv3x3 hidden -> hidden with LeakyReLU 0.2, a 1x1 conv
  hidden -> C_m initialised to zero (so F_m = 0 and an untrained head returns the base reconstruction
  exactly). `hidden` = (32, 48, 64) coarse to fine.
- W_g: 1x1 conv [f, F] (2 C_m) -> C_m, factored through rank `gate_rank` = 16 when C_m > gate_rank
  (still one linear map then the sigmoid, Eq. 3; it keeps the 256-channel stage small).
- GAM: `heads` = 2 heads of d_k = `head_dim` = 16 (the paper: d_k = 64; scaled down with the widths to
  fit the asset budget), `top_mu` = 0.25 (keep the top 25 % of the scores per query), `gam_blocks` = 1,
  projections 1x1 without bias, W_o initialised to zero (an untrained GAM is the identity on F).
  Attention runs on at most `attention_side` x `attention_side` tokens (32 x 32): a larger layer's f and F
  are average-pooled to that grid and the attended update W_o A is resized back bilinearly. Full attention
  at b512.conv1 (512 x 512 = 262,144 tokens) would need a 262,144^2 score matrix (256 GiB per head in
  float32). Never active on the 64 px default (sides 8, 16, 32).
- Loss weights, learning rate and warp strength live in the trainer
  (experiments/training/train_gradstyle.py), also documented there as our choice.
Edit consistency (not in the paper: our choice). Trained with the paper's losses (Eq. 15) alone, the head
reconstructed very well but its gated residuals outweighed the features they were added to (mean
|g_m F_m| 0.108 / 0.066 / 0.093 against mean |f_m| 0.092 / 0.065 / 0.042 at the three stages, on 8 held-out targets), so edits
barely moved its image: edit strength 0.26 in `latentspaces compensation --quick`. The trainer therefore
adds an edit-consistency loss, mean |(edit(W+ + delta) - image) - (G(W+ + delta) - G(W+))|_1 over random
GANSpace edits delta, which asks the head's edit to move its image as the generator's edit moves the
base's; its weight is the trainer's --lambda-edit-consistency (see the trainer's docstring).
The shipped default-gradstyle: the first run (paper losses only, `python -m experiments.training.train_gradstyle
--out runs/gradstyle --steps 3000 --max-seconds 1380 --perceptual d-features --half --lambda-edit-consistency 0`,
stopped at 2493 steps; the flag came later, 0 is what that run did)
fine-tuned with the edit-consistency weight 1 for 2195 steps (`python -m experiments.training.train_gradstyle
--out runs/gradstyle_ec1 --init-from runs/gradstyle/checkpoint.pt --perceptual d-features --half --steps 3000
--snap 100 --max-seconds 1500 --lambda-edit-consistency 1`; `--steps 2195` without the time limit should repeat it on one thread; not verified).
In `latentspaces compensation --quick`: edit strength 0.83 (was 0.26), MSE 0.0025 (was 0.0022; base 0.063),
SSIM 0.907, identity 0.981. A weight of 3 (2414 steps, same start) gave edit strength 0.94 at MSE 0.0035 and
SSIM 0.890: weight 1, the default, keeps more of the reconstruction while clearing 0.7 of the base's edits.
Default head on the 64 px generator: 264,208 parameters (about 0.53 MB in float16).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from latentspaces.assets import DEFAULT_WPLUS_ENCODER
from latentspaces.interfaces import Compensation

from .config_checks import check_count, check_fraction, conv_layer_resolution
from .probing import probe_features


PAPER_BLOCKS = (3, 6, 8)     # GradStyle's stages: after these blocks of the 1024 px generator (b4 = 1st)
PAPER_BLOCK_COUNT = 9        # blocks of the 1024 px generator: b4, b8, ..., b1024


def gradstyle_blocks(resolution: int) -> Tuple[int, ...]:
    """The blocks (1 = b4) after which GradStyle injects on an R px generator: round(k * B / 9) for the
    paper's k = 3, 6, 8, with B = log2(R) - 1 blocks; (3, 6, 8) at 1024 px."""
    n_blocks = int(math.log2(resolution)) - 1
    picks = tuple(max(1, math.floor(k * n_blocks / PAPER_BLOCK_COUNT + 0.5)) for k in PAPER_BLOCKS)
    if len(set(picks)) != len(picks):
        raise ValueError(f"GradStyle's three stages need three distinct blocks; a {resolution} px generator has "
                         f"{n_blocks} (16 px or more are needed)")
    return picks


def default_gradstyle_layers(G) -> Tuple[str, ...]:
    """The last conv of each block of `gradstyle_blocks`, in generator order: ('b16.conv1', 'b128.conv1',
    'b512.conv1') at 1024 px, ('b8.conv1', 'b16.conv1', 'b32.conv1') at 64 px."""
    layers = tuple(f"b{4 * 2 ** (block - 1)}.conv1" for block in gradstyle_blocks(G.resolution))
    missing = [name for name in layers if name not in G.synthesis.feature_layers]
    if missing:
        raise ValueError(f"GradStyle's layers {missing} are not conv layers of this generator "
                         f"({G.synthesis.feature_layers})")
    return layers


def position_encoding_2d(channels: int, h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """2-D sinusoidal position encoding [channels, h, w] (channels divisible by 4): the first half encodes
    the row, the second the column, each as sin/cos pairs at frequencies 10000^(-2i/(channels/2)) (the
    Transformer's encoding per axis). Values in [-1, 1]."""
    if channels % 4:
        raise ValueError(f"the 2-D position encoding needs channels divisible by 4, got {channels}")
    half = channels // 2
    freq = torch.exp(torch.arange(0, half, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / half))
    def axis(n: int) -> torch.Tensor:                                  # [half, n]
        a = torch.arange(n, device=device, dtype=torch.float32)[None] * freq[:, None]
        return torch.stack([a.sin(), a.cos()], 1).reshape(half, n)
    pe = torch.cat([axis(h)[:, :, None].expand(half, h, w), axis(w)[:, None, :].expand(half, h, w)], 0)
    return pe.to(dtype)


def selective_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: float
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Attention keeping the top `keep` fraction of the scores of each query (GradStyle Eq. 8).

    q [B, h, Nq, d], k [B, h, Nk, d], v [B, h, Nk, dv]; keep in (0, 1]. Scores q k^T / sqrt(d); per query the
    ceil(keep * Nk) largest are kept, the others set to -inf before the softmax, so they get exactly zero
    weight. Returns (output [B, h, Nq, dv], weights [B, h, Nq, Nk], rows summing to 1).
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep (top mu) must lie in (0, 1], got {keep}")
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    n_keep = max(1, math.ceil(keep * scores.shape[-1]))
    if n_keep < scores.shape[-1]:
        top, idx = scores.topk(n_keep, dim=-1)
        scores = torch.full_like(scores, -math.inf).scatter(-1, idx, top)
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


class AlignmentBlock(nn.Module):
    """One GAM block: F <- F + W_o selective_attention(W_q f + P, W_k F + P, W_v F) (Eqs. 6-9), on at most
    `side` x `side` tokens (larger maps are average-pooled to that grid and the update resized back)."""

    def __init__(self, channels: int, heads: int, head_dim: int, keep: float, side: int = 32):
        super().__init__()
        self.heads, self.head_dim, self.keep, self.side = heads, head_dim, keep, side
        d = heads * head_dim
        self.q = nn.Conv2d(channels, d, 1, bias=False)
        self.k = nn.Conv2d(channels, d, 1, bias=False)
        self.v = nn.Conv2d(channels, d, 1, bias=False)
        self.o = nn.Conv2d(d, channels, 1, bias=False)
        nn.init.zeros_(self.o.weight)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:               # [N, d, H, W] -> [N, h, HW, head_dim]
        n, _, hh, ww = x.shape
        return x.reshape(n, self.heads, self.head_dim, hh * ww).transpose(-1, -2)

    def forward(self, f: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        full = r.shape[-2:]
        if max(full) > self.side:   # attention on a pooled grid: the score matrix grows as (H W)^2
            grid = (min(full[0], self.side), min(full[1], self.side))
            f, small = F.adaptive_avg_pool2d(f, grid), F.adaptive_avg_pool2d(r, grid)
        else:
            small = r
        n, _, hh, ww = small.shape
        pe = position_encoding_2d(self.heads * self.head_dim, hh, ww, r.device, r.dtype)[None]
        out, _ = selective_attention(self._tokens(self.q(f) + pe), self._tokens(self.k(small) + pe),
                                     self._tokens(self.v(small)), self.keep)
        update = self.o(out.transpose(-1, -2).reshape(n, -1, hh, ww))
        if update.shape[-2:] != full:
            update = F.interpolate(update, size=full, mode="bilinear", align_corners=False)
        return r + update


class GlobalAlignment(nn.Module):
    """GAM: residual F [N, C, H, W] aligned to the edited feature f [N, C, H, W] by `blocks` blocks."""

    def __init__(self, channels: int, heads: int, head_dim: int, keep: float, blocks: int, side: int = 32):
        super().__init__()
        self.blocks = nn.ModuleList([AlignmentBlock(channels, heads, head_dim, keep, side) for _ in range(blocks)])

    def forward(self, f: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            r = block(f, r)
        return r


class GradualResidual(nn.Module):
    """GRM of one stage: E_res (Eq. 2) and the gate W_g (Eqs. 3-4) for a layer of C channels."""

    def __init__(self, pyramid_channels: int, channels: int, hidden: int, gate_rank: int):
        super().__init__()
        self.w_t = nn.Conv2d(pyramid_channels, hidden, 1)
        self.w_f = nn.Conv2d(channels, hidden, 1, bias=False)
        self.body = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(hidden, hidden, 3, 1, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(hidden, hidden, 3, 1, 1), nn.LeakyReLU(0.2))
        self.out = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if 0 < gate_rank < channels:
            self.gate = nn.Sequential(nn.Conv2d(2 * channels, gate_rank, 1, bias=False), nn.Conv2d(gate_rank, channels, 1))
        else:
            self.gate = nn.Conv2d(2 * channels, channels, 1)

    def residual(self, t: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """F = E_res(W_T t, W_f f): t [N, Cp, h, w] (a pyramid level at any side), f [N, C, H, W] -> [N, C, H, W].

        W_T t is resized bilinearly to H x W (equal to resizing t first: a 1x1 conv commutes with it)."""
        wt = self.w_t(t)
        if wt.shape[-2:] != f.shape[-2:]:
            wt = F.interpolate(wt, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.body(wt + self.w_f(f)))

    def fuse(self, f: torch.Tensor, r: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(f + g * F, g * F) with g = sigmoid(W_g [f, F]) (Eqs. 3-4; g * F enters L_f, Eq. 5)."""
        gated = torch.sigmoid(self.gate(torch.cat([f, r], 1))) * r
        return f + gated, gated


class GradStyle(nn.Module):
    """GradStyle's GRMs and GAMs for a generator with `num_ws` x `w_dim` codes, at conv `layers`.

    Implements `latentspaces.interfaces.CompensationHead`. The pyramid T_m comes from the frozen base
    W+ encoder, which is not part of this head's weights: `bind(base)` it once (or pass `pyramid=`
    to `compensate`). `forward` is not used on its own.
    """

    def __init__(
        self,
        num_ws: int,                              # generator's number of w rows
        w_dim: int,                               # generator's w dimensionality
        layers: Sequence[str],                    # conv layers, generator order (default_gradstyle_layers), e.g.
                                                  # ['b8.conv1', 'b16.conv1', 'b32.conv1'] at 64 px
        layer_channels: Sequence[int],            # C_m: channels of each layer's output
        layer_resolutions: Sequence[int],         # side of each layer's output (px)
        pyramid_channels: Sequence[int],          # channels of T_m, coarse to fine (128 each for the 'small' W+ encoder)
        hidden: Sequence[int] = (32, 48, 64),     # E_res width per stage (not in the paper: our choice)
        gate_rank: int = 16,                      # rank of W_g when C_m > gate_rank; 0: full rank (our choice)
        heads: int = 2,                           # GAM attention heads (our choice)
        head_dim: int = 16,                       # d_k per head (paper: 64; scaled down with the widths)
        top_mu: float = 0.25,                     # selective attention: fraction of scores kept per query, (0, 1]
        gam_blocks: int = 1,                      # GAM blocks per stage (paper: "a few"; our choice)
        attention_side: int = 32,                 # GAM attends on at most side x side tokens (pooled above; our choice)
        base_encoder: str = DEFAULT_WPLUS_ENCODER,  # name or path of the frozen W+ encoder it was trained over (a record)
    ):
        super().__init__()
        m = len(layers)
        if not (len(layer_channels) == len(layer_resolutions) == len(pyramid_channels) == len(hidden) == m) or m == 0:
            raise ValueError(f"layers, layer_channels, layer_resolutions, pyramid_channels and hidden need one "
                             f"entry per stage; got {len(layers)}, {len(layer_channels)}, {len(layer_resolutions)}, "
                             f"{len(pyramid_channels)}, {len(hidden)}")
        check_count(num_ws, "num_ws", 1, 64)
        check_count(w_dim, "w_dim")
        for name, res, c, p, h in zip(layers, layer_resolutions, layer_channels, pyramid_channels, hidden):
            if conv_layer_resolution(name) != res:
                raise ValueError(f"layer {name!r} puts out {conv_layer_resolution(name)} px features, not {res}")
            check_count(c, "layer_channels[m]"), check_count(p, "pyramid_channels[m]"), check_count(h, "hidden[m]")
        check_count(gate_rank, "gate_rank", 0), check_count(heads, "heads", 1, 64)
        check_count(head_dim, "head_dim", 1, 1024), check_count(gam_blocks, "gam_blocks", 1, 16)
        check_fraction(top_mu, "top_mu", 0.0, 1.0)
        check_count(attention_side, "attention_side", 1, 128)
        if (heads * head_dim) % 4:
            raise ValueError(f"heads * head_dim must be divisible by 4 (2-D position encoding), got {heads * head_dim}")
        self.num_ws, self.w_dim = num_ws, w_dim
        self.layer_names = tuple(layers)
        self.layer_channels, self.layer_resolutions = tuple(layer_channels), tuple(layer_resolutions)
        self.pyramid_channels, self.hidden = tuple(pyramid_channels), tuple(hidden)
        self.gate_rank, self.heads, self.head_dim = gate_rank, heads, head_dim
        self.top_mu, self.gam_blocks, self.base_encoder = top_mu, gam_blocks, base_encoder
        if attention_side < 1:
            raise ValueError(f"attention_side must be >= 1, got {attention_side}")
        self.attention_side = attention_side
        self.grm = nn.ModuleList([GradualResidual(p, c, h, gate_rank)
                                  for p, c, h in zip(pyramid_channels, layer_channels, hidden)])
        self.gam = nn.ModuleList([GlobalAlignment(c, heads, head_dim, top_mu, gam_blocks, attention_side)
                                  for c in layer_channels])
        object.__setattr__(self, "_base", None)   # the frozen base encoder: not a submodule, not saved

    @property
    def layers(self) -> Tuple[str, ...]:
        """The generator conv layers this head injects into, in generator order."""
        return self.layer_names

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON values (what an encoder file's header stores)."""
        return dict(num_ws=self.num_ws, w_dim=self.w_dim, layers=list(self.layer_names),
                    layer_channels=list(self.layer_channels), layer_resolutions=list(self.layer_resolutions),
                    pyramid_channels=list(self.pyramid_channels), hidden=list(self.hidden), gate_rank=self.gate_rank,
                    heads=self.heads, head_dim=self.head_dim, top_mu=self.top_mu, gam_blocks=self.gam_blocks,
                    attention_side=self.attention_side, base_encoder=self.base_encoder)

    @classmethod
    def for_generator(cls, G, base, base_encoder: str = DEFAULT_WPLUS_ENCODER, **kwargs) -> "GradStyle":
        """An untrained head for G over the W+ encoder `base` (bound to it); kwargs: the size fields."""
        with torch.no_grad():
            probe = base.pyramid(torch.zeros(1, 3, base.input_size, base.input_size,
                                             device=next(base.parameters()).device))
        layers = default_gradstyle_layers(G)
        shapes = [G.synthesis.feature_shape(n) for n in layers]
        head = cls(G.num_ws, G.w_dim, layers, [s[0] for s in shapes], [s[1] for s in shapes],
                   [p.shape[1] for p in probe], base_encoder=base_encoder, **kwargs)
        return head.bind(base)

    def bind(self, base) -> "GradStyle":
        """Use the frozen W+ encoder `base` (it needs `pyramid(x)`) for T_m; returns self. `base` is not a
        submodule: it is not saved with the head, and `head.to(device)` does not move it."""
        object.__setattr__(self, "_base", base)
        return self

    # ------------------------------------------------------------------ streams
    def _check(self, G, ws: torch.Tensor) -> None:
        if G.num_ws != self.num_ws or G.w_dim != self.w_dim:
            raise ValueError(f"this GradStyle head is for {self.num_ws} x {self.w_dim} ws, the generator has "
                             f"{G.num_ws} x {G.w_dim}")
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")

    def pyramid_of(self, x: torch.Tensor) -> List[torch.Tensor]:
        """T_m of targets x [N, 3, R, R] in [-1, 1] from the bound base encoder, each at its layer's side."""
        if self._base is None:
            raise RuntimeError(f"GradStyle needs its frozen base encoder for the pyramid T_m: call "
                               f"head.bind(encoders.load_encoder({self.base_encoder!r})) once, or pass pyramid= "
                               "(base.pyramid(x)) to compensate")
        with torch.no_grad():
            return list(self._base.pyramid(x))

    def check_pyramid(self, maps: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """The pyramid's levels, coarse to fine, checked against the stages (each at its own side)."""
        if len(maps) != len(self.layer_names):
            raise ValueError(f"the pyramid needs {len(self.layer_names)} levels (coarse to fine), got {len(maps)}")
        for t, c in zip(maps, self.pyramid_channels):
            if t.ndim != 4 or t.shape[1] != c:
                raise ValueError(f"pyramid level must be [N, {c}, H, W], got {tuple(t.shape)}")
        return list(maps)

    def reconstruct(self, G, ws: torch.Tensor, maps: Sequence[torch.Tensor], noise_mode: str = "const"
                    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The reconstruction stream: image [N, 3, R, R] of ws with the GRMs at every stage (Eqs. 2-4).

        Returns (image, cache) with, per layer l, 'residual.l' (F_m), 'feature.l' (f_m^rec) and
        'gated.l' (g_m * F_m, for L_f).
        """
        cache: Dict[str, torch.Tensor] = {}

        def stage(m: int, name: str):
            def fn(f: torch.Tensor) -> torch.Tensor:
                r = self.grm[m].residual(maps[m], f)
                fused, gated = self.grm[m].fuse(f, r)
                cache[f"feature.{name}"], cache[f"residual.{name}"], cache[f"gated.{name}"] = f, r, gated
                return fused
            return fn

        edits = {name: stage(m, name) for m, name in enumerate(self.layer_names)}
        return G.synthesis.with_edits(ws, edits, noise_mode=noise_mode), cache

    def edit_stream(self, G, ws: torch.Tensor, residuals: Sequence[torch.Tensor],
                    anchors: Optional[Sequence[torch.Tensor]] = None, noise_mode: str = "const"
                    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """The editing stream: image of ws with each residual aligned by the GAM and fused by the shared gate.

        residuals: F_m per stage [N, C_m, H_m, W_m]. anchors: None for the raw GAM (training, Eq. 10:
        F' = GAM(f^edi, F)); else f_m^rec per stage for the anchored F' = F + GAM(f^edi, F) - GAM(f^rec, F).
        Returns (image [N, 3, R, R], the aligned residuals F'_m).
        """
        aligned: List[torch.Tensor] = [None] * len(self.layer_names)

        def stage(m: int):
            def fn(f: torch.Tensor) -> torch.Tensor:
                r = residuals[m]
                if anchors is None:
                    a = self.gam[m](f, r)
                else:
                    a = r + (self.gam[m](f, r) - self.gam[m](anchors[m], r))
                aligned[m] = a
                return self.grm[m].fuse(f, a)[0]
            return fn

        edits = {name: stage(m) for m, name in enumerate(self.layer_names)}
        return G.synthesis.with_edits(ws, edits, noise_mode=noise_mode), aligned

    def probe(self) -> Dict[str, torch.Tensor]:
        """The output check's pass (`encoders.probing`): per stage, the GRM's residual and fusion and the GAM's
        alignment on fixed stand-ins for the layer's output and the pyramid level (at the layer's side)."""
        device = next(self.parameters()).device
        out: Dict[str, torch.Tensor] = {}
        for m, name in enumerate(self.layer_names):
            side = self.layer_resolutions[m]
            f = probe_features(self.layer_channels[m], side, seed=2 * m).to(device)
            t = probe_features(self.pyramid_channels[m], side, seed=2 * m + 1).to(device)
            r = self.grm[m].residual(t, f)
            out[f"residual.{name}"], out[f"fused.{name}"] = r, self.grm[m].fuse(f, r)[0]
            out[f"aligned.{name}"] = self.gam[m](f, r)
        return out

    # ------------------------------------------------------------------ protocol
    def compensate(self, G, x: torch.Tensor, ws: torch.Tensor, x0: Optional[torch.Tensor] = None,
                   noise_mode: str = "const", pyramid: Optional[Sequence[torch.Tensor]] = None) -> Compensation:
        """x [N, 3, R, R] in [-1, 1], base ws [N, num_ws, w_dim] -> Compensation with the reconstruction
        stream's image, ws unchanged, and cache {'residual.l', 'feature.l', 'gated.l' per layer l;
        'pyramid.m' per level}. x0 is not needed (accepted for the protocol). pyramid: the base encoder's
        `pyramid(x)` when already computed (else the bound encoder computes it)."""
        self._check(G, ws)
        maps = self.check_pyramid(self.pyramid_of(x) if pyramid is None else pyramid)
        image, cache = self.reconstruct(G, ws, maps, noise_mode)
        cache.update({f"pyramid.{m}": t for m, t in enumerate(maps)})
        return Compensation(image=image, ws=ws, cache=cache)

    def edit(self, G, comp: Compensation, delta_ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Images [N, 3, R, R] of comp.ws + delta_ws through the editing stream with anchored alignment.

        delta_ws [N, num_ws, w_dim]; delta 0 gives comp.image back exactly (see the module docstring).
        """
        self._check(G, comp.ws)
        residuals = [comp.cache[f"residual.{n}"] for n in self.layer_names]
        anchors = [comp.cache[f"feature.{n}"] for n in self.layer_names]
        return self.edit_stream(G, comp.ws + delta_ws, residuals, anchors, noise_mode)[0]
