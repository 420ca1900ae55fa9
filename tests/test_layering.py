"""The import structure: layers that only point down, and no import cycle anywhere.

Every module of the four packages is parsed (nothing is imported), and every import statement is
collected, function-local ones included: latentspaces imports nothing of optimizers, encoders or
experiments; optimizers and encoders import only latentspaces (and themselves); the module graph
has no cycle. Imports under `if TYPE_CHECKING:` never run, so they obey the layers but are left out
of the cycle check.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("latentspaces", "optimizers", "encoders", "experiments")
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "latentspaces": set(),
    "optimizers": {"latentspaces"},
    "encoders": {"latentspaces"},
    "experiments": {"latentspaces", "optimizers", "encoders"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            mods[_module_name(path)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str, known: Set[str]) -> List[Tuple[str, int, bool]]:
    """(imported project module, line, runs at run time) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skip: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []

    def resolve(name: str) -> str:
        while name and name not in known:  # `from pkg.mod import func` -> the module pkg.mod
            name = name.rpartition(".")[0]
        return name

    for node in ast.walk(tree):
        runtime = id(node) not in skip
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target:
                    found.append((target, node.lineno, runtime))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            for alias in node.names:
                target = resolve(f"{stem}.{alias.name}") if f"{stem}.{alias.name}" in known else resolve(stem)
                if target:
                    found.append((target, node.lineno, runtime))
    return found


@pytest.fixture(scope="module")
def graph():
    mods = _modules()
    known = set(mods)
    return mods, {m: _imports(p, m, known) for m, p in mods.items()}


def test_every_package_is_parsed(graph):
    mods, _ = graph
    for pkg in PACKAGES:
        assert pkg in mods, f"{pkg}/__init__.py not found"
    assert len(mods) > 40


def test_layers_point_down(graph):
    mods, edges = graph
    bad = []
    for module, imports in edges.items():
        pkg = module.split(".")[0]
        for target, line, _ in imports:
            other = target.split(".")[0]
            if other != pkg and other not in ALLOWED[pkg]:
                bad.append(f"{mods[module].relative_to(ROOT)}:{line} imports {target} ({pkg} may import "
                           f"{sorted(ALLOWED[pkg]) or 'nothing'} of the project)")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def _cycles(edges: Dict[str, List[Tuple[str, int, bool]]]) -> List[List[str]]:
    """Strongly connected components of more than one module, or with a self-loop (Tarjan)."""
    succ = {m: sorted({t for t, _, runtime in imps if runtime}) for m, imps in edges.items()}
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in succ.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in succ.get(v, []):
                out.append(sorted(comp))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles(graph):
    _, edges = graph
    cycles = _cycles(edges)
    assert not cycles, "import cycles (function-local imports included):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_cycles_between_subpackages(graph):
    """The same at the granularity of subpackages and top modules (latentspaces.checkpoints, latentspaces.storage,
    experiments.studies, ...): two parts of a layer never lean on each other, even through different modules
    (checkpoints <-> assets did, by function-local imports)."""
    _, edges = graph

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    units: Dict[str, List[Tuple[str, int, bool]]] = {}
    for module, imports in edges.items():
        units.setdefault(unit(module), []).extend((unit(t), line, rt) for t, line, rt in imports if unit(t) != unit(module))
    cycles = _cycles(units)
    assert not cycles, "cycles between subpackages:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_upward_local_imports_and_cycles(tmp_path):
    """The checker itself: a function-local upward import and a two-module cycle are both caught."""
    known = {"latentspaces", "latentspaces.a", "latentspaces.b", "encoders"}
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from encoders import x\n    from . import b\n")
    b = tmp_path / "b.py"
    b.write_text("from .a import f\n")
    ea = _imports(a, "latentspaces.a", known)
    eb = _imports(b, "latentspaces.b", known)
    assert ("encoders", 2, True) in ea and ("latentspaces.b", 3, True) in ea
    assert _cycles({"latentspaces.a": ea, "latentspaces.b": eb}) == [["latentspaces.a", "latentspaces.b"]]
