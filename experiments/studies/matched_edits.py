"""Identity at equal edit size: the same alpha is a different edit in each space, so compare at a matched change.

An edit's size is its mean absolute pixel change from the unedited image (`edit_change`, in [0, 2]
for images in [-1, 1]). At |alpha| = 2 along the same GANSpace direction an F/Z+ edit of the default
model changes the image less than an F/W+ edit, so "identity at |alpha| = 2" favours the space that
edits less. Here, per (target, direction, sign), the alpha at which the edit changes the image by a
given `size` is found by a bracketed search on the edit itself:

1. bracket: alpha_hi = `start_alpha`, doubled while the change is below `size`, up to `max_alpha`
   (an edit that never reaches the size there is recorded with alpha NaN and left out of the means;
   Z-type edits on the sphere saturate, so some never do);
2. regula falsi inside the bracket (the next alpha interpolates the change linearly between the
   ends, kept inside the middle 90% so the bracket always shrinks), per image in one batch, until
   the change is within `rtol` x size, at most `max_iterations` times.

The identity of the edit at that alpha is then measured. Rows go to matched_edits.csv, one per
(space, target, direction, sign, size) with alpha, the change reached and identity; the summary of
identity-curves reports the mean identity at each size (`identity_at_size_{s}`), the share of edits
that reached it and the mean |alpha| it took, and `paired_statistics` tests the spaces edit by edit
at each size.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence

import torch

from latentspaces.directions import Direction
from latentspaces.interfaces import IdentitySimilarity
from latentspaces.losses import pixel_distance
from latentspaces.spaces import Code, LatentSpace

from ..argtypes import edit_sizes as edit_sizes_flag
from ..config import option
from ..rows import RowSchema
from ..summaries import paired_test, paired_values, per_target_means

EDIT_SIZES = (0.02, 0.04, 0.06)   # mean absolute pixel change, images in [-1, 1]


def edit_sizes_option():
    """The `edit_sizes` field of a study's config (`experiments.config.option`): its default and its flag."""
    return option(EDIT_SIZES, "edit sizes (mean absolute pixel change) at which identity is compared, each edit's "
                              "alpha searched for ('none': skip)", type=edit_sizes_flag)

MATCHED_CSV = "matched_edits.csv"
FIELDS = ["space", "target", "direction", "sign", "size", "alpha", "edit_change", "identity", "codes_sha256"]
MATCHED = RowSchema(tuple(FIELDS), key=("space", "target", "direction", "sign", "size"), ints=("target", "sign"),
                    floats=("size",))

# A batch of per-image alphas [N] -> the edited images [N, 3, R, R].
Render = Callable[[torch.Tensor], torch.Tensor]


def edit_with_alphas(space: LatentSpace, code: Code, direction: Direction, alphas: torch.Tensor) -> torch.Tensor:
    """G(code moved along `direction` by alphas[i] for image i): `LatentSpace.edit` with one alpha per image.

    alphas [N] (any finite values); returns images [N, 3, R, R]. Equal to editing each image alone
    with its alpha (tests/test_matched_edits.py checks it)."""
    field = code[space.edit_field]
    if alphas.shape != (field.shape[0],):
        raise ValueError(f"alphas must be [{field.shape[0]}] (one per code), got {tuple(alphas.shape)}")
    shaped = alphas.to(field.device, field.dtype).reshape(-1, *([1] * (field.ndim - 1)))
    return space.synthesize(space.edit(code, direction, shaped))  # type: ignore[arg-type]


def pixel_change(edited: torch.Tensor, unedited: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel change [N] of images [N, 3, R, R] from the unedited [N, 3, R, R] (an edit's size)."""
    return pixel_distance(edited, unedited, "l1")


@torch.no_grad()
def alphas_for_size(render: Render, unedited: torch.Tensor, size: float, sign: int = 1, start_alpha: float = 2.0,
                    max_alpha: float = 16.0, rtol: float = 0.02, max_iterations: int = 30) -> torch.Tensor:
    """Per image, the alpha (of the sign given) at which render(alpha) changes unedited [N, 3, R, R] by `size`.

    Returns alphas [N] (signed; NaN where the change stays below `size` up to |alpha| = max_alpha).
    The change at each alpha returned is within rtol x size of `size`, or the bracket has shrunk for
    `max_iterations` steps (then the alpha is the best end found: rare, reported by the change recorded).
    """
    if not (size > 0 and math.isfinite(size)):
        raise ValueError(f"size must be a finite number > 0 (a mean absolute pixel change), got {size!r}")
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}")
    n, device = unedited.shape[0], unedited.device
    lo = torch.zeros(n, dtype=torch.float64, device=device)
    c_lo = torch.zeros_like(lo)
    hi = torch.full_like(lo, start_alpha)

    def change(a: torch.Tensor) -> torch.Tensor:
        return pixel_change(render(sign * a.float()), unedited).double()

    c_hi = change(hi)
    while True:   # bracket: double |alpha| where the change is still below the size
        short = c_hi < size
        if not short.any() or float(hi[short].max()) >= max_alpha:
            break
        lo, c_lo = torch.where(short, hi, lo), torch.where(short, c_hi, c_lo)
        hi = torch.where(short, (hi * 2).clamp(max=max_alpha), hi)
        c_hi = torch.where(short, change(hi), c_hi)
    reached = c_hi >= size
    best = hi.clone()
    done = ~reached | ((c_hi - size).abs() <= rtol * size)
    for _ in range(max_iterations):
        if bool(done.all()):
            break
        t = ((size - c_lo) / (c_hi - c_lo).clamp_min(1e-12)).clamp(0.05, 0.95)
        mid = lo + t * (hi - lo)
        c_mid = change(mid)
        update = ~done
        above = c_mid >= size
        hi = torch.where(update & above, mid, hi)
        c_hi = torch.where(update & above, c_mid, c_hi)
        lo = torch.where(update & ~above, mid, lo)
        c_lo = torch.where(update & ~above, c_mid, c_lo)
        close = (c_mid - size).abs() <= rtol * size
        best = torch.where(update & close, mid, torch.where(update, hi, best))
        done = done | close
    return torch.where(reached, sign * best, torch.full_like(best, math.nan)).float()


@torch.no_grad()
def matched_edit_rows(render: Render, unedited: torch.Tensor, targets: torch.Tensor,
                      identity: IdentitySimilarity, sizes: Sequence[float] = EDIT_SIZES,
                      signs: Sequence[int] = (1, -1)) -> List[Dict[str, float]]:
    """For every sign and size: per image the matched alpha, the change it reached and its identity.

    render: per-image alphas [N] -> edited images [N, 3, R, R] (one direction of one space or head);
    unedited, targets: [N, 3, R, R]. Returns dicts with target (0 .. N-1), sign, size, alpha,
    edit_change and identity (NaN where the size is not reached)."""
    rows: List[Dict[str, float]] = []
    for sign in signs:
        for size in sizes:
            alphas = alphas_for_size(render, unedited, size, sign)
            ok = torch.isfinite(alphas)
            change = torch.full_like(alphas, math.nan)
            ident = torch.full_like(alphas, math.nan)
            if ok.any():
                images = render(torch.where(ok, alphas, torch.zeros_like(alphas)))
                change = torch.where(ok, pixel_change(images, unedited).float(), change)
                sims = identity(images, targets).reshape(-1).float().to(alphas.device)
                ident = torch.where(ok, sims, ident)
            rows += [{"target": i, "sign": sign, "size": size, "alpha": float(alphas[i]),
                      "edit_change": float(change[i]), "identity": float(ident[i])} for i in range(len(alphas))]
    return rows


def matched_identity_pairs(rows: Sequence[dict], a: str, b: str, size: float, name_field: str = "space") -> List[dict]:
    """Paired tests of identity at a matched edit size (matched rows of two spaces or methods): per edit
    (target, direction, sign) that reached `size` in both, and per target (mean over those edits)."""
    both = [r for r in rows if abs(float(r["size"]) - size) < 1e-9 and math.isfinite(float(r["alpha"]))]
    both = [{**r, "space": r[name_field]} for r in both]
    keys, va, vb = paired_values(both, a, b, ["target", "direction", "sign"], "identity")
    if not keys:
        return []
    ta, tb = per_target_means(keys, va, vb)
    return [{"a": a, "b": b, "measure": f"edit identity at edit size {size:g}, per edit", **paired_test(va, vb, True)},
            {"a": a, "b": b, "measure": f"edit identity at edit size {size:g}, per target",
             **paired_test(ta, tb, True)}]


def paired_columns(rows: Sequence[dict], names: Sequence[str], reference: str,
                   name_field: str = "space") -> Dict[str, Dict[str, float]]:
    """name -> {identity_minus_{ref}_at_size_{s}, wins_vs_{ref}_at_size_{s}, p_vs_{ref}_at_size_{s}}: each
    name's identity against `reference`'s at every matched size, paired per edit (`matched_identity_pairs`;
    wins: the share of paired edits where the name keeps identity better). The reference itself gets none."""
    out: Dict[str, Dict[str, float]] = {}
    sizes = sorted({float(r["size"]) for r in rows})
    for name in names:
        if name == reference:
            continue
        cols: Dict[str, float] = {}
        for size in sizes:
            tests = matched_identity_pairs(rows, name, reference, size, name_field)
            if tests:
                edit = tests[0]
                cols[f"identity_minus_{reference}_at_size_{size:g}"] = edit["mean_diff"]
                cols[f"wins_vs_{reference}_at_size_{size:g}"] = edit["a_better"] / edit["n"]
                cols[f"p_vs_{reference}_at_size_{size:g}"] = edit["p_wilcoxon"]
        out[name] = cols
    return out


def matched_summary(rows: Sequence[dict]) -> Dict[float, Dict[str, object]]:
    """size -> {identity: [values of the edits that reached it], reached: share, alpha: mean |alpha|} (rows of
    one space or method)."""
    out: Dict[float, Dict[str, object]] = {}
    for size in sorted({float(r["size"]) for r in rows}):
        mine = [r for r in rows if float(r["size"]) == size]
        hit = [r for r in mine if math.isfinite(float(r["alpha"]))]
        out[size] = {"identity": [float(r["identity"]) for r in hit], "reached": len(hit) / len(mine),
                     "alpha": sum(abs(float(r["alpha"])) for r in hit) / len(hit) if hit else math.nan}
    return out


__all__ = ["EDIT_SIZES", "edit_sizes_option", "FIELDS", "MATCHED", "MATCHED_CSV", "Render", "alphas_for_size", "edit_with_alphas",
           "matched_edit_rows", "matched_identity_pairs", "matched_summary", "paired_columns", "pixel_change"]
