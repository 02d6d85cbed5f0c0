"""The package's layers, read from the source with ``ast`` (no imports run).

Every import statement counts, at module level or inside a function, under ``TYPE_CHECKING``
or not: a function-level import still ties the two modules together (it is the usual way a
circle is hidden), so the rules and the circle check see the whole graph.

Layers, bottom to top: ``fsutil``, ``device``, ``io``, ``project`` (storage, no model) ->
``model`` (nn.Modules and prompt types) -> ``inference`` -> ``training`` -> ``workflow``;
``napari`` (the only Qt/napari code), ``bench`` and ``cli`` sit on top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
GUI_LIBS = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")
TOP = ("napari", "bench", "cli")
# layer -> promptseg layers it must not import
FORBIDDEN = {
    "fsutil": ("device", "io", "project", "model", "inference", "training", "workflow") + TOP,
    "device": ("fsutil", "io", "project", "model", "inference", "training", "workflow") + TOP,
    "io": ("project", "model", "inference", "training", "workflow") + TOP,
    # project reads and writes image files through io's format-aware readers; io knows no project
    "project": ("model", "inference", "training", "workflow") + TOP,
    "model": ("project", "inference", "training", "workflow") + TOP,
    "inference": ("training", "workflow") + TOP,
    "training": ("workflow",) + TOP,
    "workflow": TOP,
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, package: str = "promptseg") -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> package modules it imports, module -> top-level third-party names it imports)
    for every .py file under ``root / package``."""
    files = {_module_name(p, root): p for p in (root / package).rglob("*.py")}
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = mod if is_pkg else mod.rpartition(".")[0]
        deps, ext = set(), set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                subs = [f"{stem}.{a.name}" for a in node.names if f"{stem}.{a.name}" in files]
                targets = subs or [stem]
            for t in targets:
                if t == package or t.startswith(package + "."):
                    while t not in files and "." in t:   # `promptseg.x.name` -> module promptseg.x
                        t = t.rpartition(".")[0]
                    if t != mod:
                        deps.add(t)
                else:
                    ext.add(t.split(".")[0])
        internal[mod], external[mod] = deps, ext
    return internal, external


def layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(internal: dict[str, set[str]], external: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in sorted(internal.items()):
        for dep in sorted(deps):
            if layer(dep) in FORBIDDEN.get(layer(mod), ()):
                out.append(f"{mod} imports {dep} ({layer(mod)} must not import {layer(dep)})")
        if layer(mod) != "napari":
            for lib in sorted(external[mod] & set(GUI_LIBS)):
                out.append(f"{mod} imports {lib} (only promptseg.napari may import Qt or napari)")
    return out


def circles(internal: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in internal.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(internal):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph(SRC)


def test_the_graph_sees_module_and_function_level_imports(graph):
    internal, external = graph
    assert "promptseg.inference.embeddings" in internal["promptseg.inference.predictor"]
    assert "promptseg.inference.volume" in internal["promptseg.napari.volume_panel"]     # inside a method
    assert "promptseg.model.backbones.litemedsam" in internal["promptseg.model.backbones"]   # `from . import x`
    assert "qtpy" in external["promptseg.napari.widget"]
    assert all(layer(m) for m in internal if m != "promptseg")


def test_layers_import_only_downwards_and_only_napari_imports_qt(graph):
    assert violations(*graph) == []


def test_no_import_circles_between_modules(graph):
    assert circles(graph[0]) == []


def test_the_checks_catch_a_planted_upward_import_a_circle_and_qt(tmp_path):
    pkg = tmp_path / "promptseg"
    for d in ("model", "inference", "training", "workflow"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "model" / "a.py").write_text("def f():\n    from ..inference import b\n")
    (pkg / "inference" / "b.py").write_text("from ..model import a\nimport qtpy.QtWidgets\n")
    (pkg / "training" / "c.py").write_text("from promptseg.workflow.d import g\n")
    (pkg / "workflow" / "d.py").write_text("def g():\n    pass\n")
    internal, external = import_graph(tmp_path)
    found = violations(internal, external)
    assert any("promptseg.model.a imports promptseg.inference.b" in v for v in found)
    assert any("promptseg.inference.b imports qtpy" in v for v in found)
    assert any("promptseg.training.c imports promptseg.workflow.d" in v for v in found)
    assert circles(internal) == [["promptseg.inference.b", "promptseg.model.a"]]
