"""One home per concept: the optimizers and trainers compute difference-based losses only through
`latentspaces.losses`, and the warps only through `experiments.training.warps` (their one home).

Each module is parsed (nothing is imported). A reconstruction written by hand is any of
`(a - b).square()`, `(a - b).abs()`, `(a - b).pow(k)`, `(a - b) ** k`, `torch.abs(a - b)` or a call
of torch's `mse_loss` / `l1_loss` / `smooth_l1_loss` / `MSELoss` / `L1Loss`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[1]
WARPS = ROOT / "experiments" / "training" / "warps.py"
CHECKED = sorted(p for p in [*(ROOT / "optimizers").glob("*.py"), *(ROOT / "experiments" / "training").glob("*.py")]
                 if p != WARPS)
LOSS_CALLS = {"mse_loss", "l1_loss", "smooth_l1_loss", "MSELoss", "L1Loss", "SmoothL1Loss"}
WARP_CALLS = {"grid_sample", "perspective", "affine_grid"}


def _is_difference(node: ast.AST) -> bool:
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub)


def _name(func: ast.AST) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def hand_written_losses(source: str) -> List[str]:
    """'line: what' for every difference-based loss or warp computed in `source` outside the loss module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if (isinstance(node.func, ast.Attribute) and name in {"square", "abs", "pow"}
                    and _is_difference(node.func.value)):
                found.append(f"{node.lineno}: (a - b).{name}()")
            elif name in {"abs", "square"} and node.args and _is_difference(node.args[0]):
                found.append(f"{node.lineno}: {name}(a - b)")
            elif name in LOSS_CALLS:
                found.append(f"{node.lineno}: {name}")
            elif name in WARP_CALLS:
                found.append(f"{node.lineno}: {name} (warps live in experiments.training.warps)")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _is_difference(node.left):
            found.append(f"{node.lineno}: (a - b) ** k")
    return found


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_losses_and_warps_come_from_their_modules(path):
    found = hand_written_losses(path.read_text())
    assert not found, (f"{path.relative_to(ROOT)} computes a loss or warp by hand at {found}: use "
                       "latentspaces.losses (ReconstructionLoss, pixel_distance, mean_squared_error, ...) or "
                       "experiments.training.warps")


@pytest.mark.parametrize("snippet", [
    "l2 = (y - x).square().mean()", "l1 = (out - target).abs().mean()", "e = ((y - x) ** 2).mean()",
    "e = torch.abs(y - x).mean()", "e = F.mse_loss(y, x)", "e = (a - b).pow(2).sum()",
    "y = F.grid_sample(x, grid)",
])
def test_the_check_sees_a_planted_loss(snippet):
    assert hand_written_losses(snippet)


def test_the_check_leaves_other_arithmetic_alone():
    assert not hand_written_losses("d = (a - b).norm(dim=1)\ne = residual.square().mean()\nt = x.abs().mean()")


# ---------------------------------------------------------------------------------- digests and CSV files
HOMES = {"hashlib": "latentspaces/fingerprints.py", "csv": "experiments/rows.py"}


def imports_of(source: str) -> List[str]:
    """The top-level module names `source` imports (function-local imports included)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return names


def test_digests_and_csv_files_have_one_home_each():
    """Every sha256 is made by latentspaces.fingerprints, every CSV read or written by experiments.rows."""
    found = []
    for pkg in ("latentspaces", "optimizers", "encoders", "experiments"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            found += [f"{rel} imports {m} (its home: {HOMES[m]})" for m in imports_of(path.read_text())
                      if m in HOMES and HOMES[m] != rel]
    assert not found, found


def test_the_import_scan_sees_local_imports():
    assert imports_of("def f():\n    import hashlib\n    from csv import writer\n") == ["hashlib", "csv"]
