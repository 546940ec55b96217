"""The package's import layers (docs/ARCHITECTURE.md): no import circles, and no import from a layer
to a higher one. Every ``import`` of ``cmvae`` counts, at module level, in functions and under
``TYPE_CHECKING`` alike: a type-only upward import is still a dependency on the layer above.

A new module must be placed in :data:`LAYERS`; a module that needs something of a higher layer
gets it passed in (an argument, a :class:`typing.Protocol`, a registration in
:mod:`cmvae.registry`), never by importing upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Bottom to top. Names are relative to ``cmvae`` (``""`` is the package itself, ``x.*`` every module
#: below ``x``); an exact name wins over a ``.*`` pattern. A module may import from its own layer
#: (without circles) and from the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("_version", "registry", "lazyrows", "schema", "saving", "distributions", "experts", "missing",
                    "priors", "inputs")),
    ("parts", ("nets", "nets.*", "data", "data.*", "metrics", "metrics.*", "plots")),
    ("models", ("objectives", "models", "models.*")),
    ("training and evaluation", ("training", "callbacks", "selection", "diagnostics", "generation")),
    ("configuration", ("data.run_data", "config")),
    ("estimators", ("estimator", "estimator.*", "baselines", "clustering_baselines")),
    ("workflows", ("runs", "runs.*", "compare", "benchmark")),
    ("package API", ("",)),
    ("applications", ("reproduce", "reproduce.*", "cli", "cli.*", "__main__")),
]


def modules(root: Path, package: str = "cmvae") -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package)}`` of every module under ``root / package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph(root: Path, package: str = "cmvae") -> dict[str, dict[str, int]]:
    """``{module: {imported module of the package: line}}`` from every import statement (``ast``)."""
    mods = modules(root, package)

    def known(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in mods.items():
        here = name if is_package else name.rsplit(".", 1)[0]
        edges = graph.setdefault(name, {})
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # ``from pkg import sub`` imports the submodule ``pkg.sub``; ``from mod import name`` imports ``mod``
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in mods else source for a in node.names]
            else:
                continue
            for target in targets:
                if target == package or target.startswith(package + "."):
                    target = known(target)
                    if target != name:
                        edges.setdefault(target, node.lineno)
    return graph


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]] = LAYERS, package: str = "cmvae") -> int | None:
    """Index in ``layers`` of ``module`` (exact names first, then the longest ``x.*`` pattern)."""
    rel = module[len(package) + 1:] if module != package else ""
    for i, (_, names) in enumerate(layers):
        if rel in names:
            return i
    best: tuple[int, int] | None = None
    for i, (_, names) in enumerate(layers):
        for pattern in names:
            if pattern.endswith(".*") and rel.startswith(pattern[:-1]) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), i)
    return None if best is None else best[1]


def upward_imports(graph: dict[str, dict[str, int]], layers=LAYERS, package: str = "cmvae") -> list[str]:
    """One line per import that goes to a higher layer."""
    out = []
    for module, edges in sorted(graph.items()):
        here = layer_of(module, layers, package)
        for target, line in sorted(edges.items()):
            there = layer_of(target, layers, package)
            if here is not None and there is not None and there > here:
                out.append(f"{module} (layer {layers[here][0]!r}) imports {target} (layer {layers[there][0]!r}) "
                           f"at line {line}")
    return out


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Import circles, each as ``[a, b, ..., a]`` (one per strongly connected group, found by DFS)."""
    found, done, stack = [], set(), []

    def visit(node: str) -> None:
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt in stack:
                cycle = stack[stack.index(nxt):] + [nxt]
                if not any(set(cycle) <= set(c) for c in found):
                    found.append(cycle)
            elif nxt not in done:
                visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return found


# ---------------------------------------------------------------------------------------------- the package


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in modules(SRC) if layer_of(m) is None)
    assert not unplaced, f"modules missing from LAYERS in {__file__}: {unplaced}"


def test_no_import_circles():
    found = cycles(import_graph(SRC))
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_upward_imports():
    found = upward_imports(import_graph(SRC))
    assert not found, "imports from a lower layer to a higher one:\n" + "\n".join(found)


def test_layer_names_are_real_modules():
    """A renamed or removed module must leave LAYERS too (a stale name would hide nothing, but mislead)."""
    mods = {m[len("cmvae") + 1:] if m != "cmvae" else "" for m in modules(SRC)}
    stale = [n for _, names in LAYERS for n in names
             if not (n in mods or (n.endswith(".*") and any(m.startswith(n[:-1]) for m in mods)))]
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


# ------------------------------------------------------------------------------------------ the checker itself


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"pkg/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


TOY_LAYERS = [("low", ("low", "sub.*")), ("high", ("high", "sub.top")), ("api", ("",))]


@pytest.mark.parametrize("statement", [
    "from .high import thing",
    "from pkg.high import thing",
    "import pkg.high",
    "from . import high",
    "def f():\n    from .high import thing",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import Thing",
])
def test_checker_finds_a_planted_upward_import(tmp_path, statement):
    root = _package(tmp_path, {"pkg/low.py": statement + "\n", "pkg/high.py": "from .low import *\n"})
    found = upward_imports(import_graph(root, "pkg"), TOY_LAYERS, "pkg")
    assert found == ["pkg.low (layer 'low') imports pkg.high (layer 'high') at line "
                     f"{statement.count(chr(10)) + 1}"]
    assert cycles(import_graph(root, "pkg")) == [["pkg.high", "pkg.low", "pkg.high"]]


def test_checker_places_subpackages_and_relative_imports(tmp_path):
    root = _package(tmp_path, {
        "pkg/low.py": "",
        "pkg/high.py": "from .sub.top import x\n",
        "pkg/sub/__init__.py": "from .bottom import y\n",
        "pkg/sub/bottom.py": "from ..low import z\n",
        "pkg/sub/top.py": "from ..high import w\nfrom . import bottom\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.sub.bottom"] == {"pkg.low": 1}
    assert graph["pkg.sub.top"] == {"pkg.high": 1, "pkg.sub.bottom": 2}
    assert layer_of("pkg.sub.top", TOY_LAYERS, "pkg") == 1 and layer_of("pkg.sub.bottom", TOY_LAYERS, "pkg") == 0
    assert upward_imports(graph, TOY_LAYERS, "pkg") == []
    assert cycles(graph) == [["pkg.high", "pkg.sub.top", "pkg.high"]]
