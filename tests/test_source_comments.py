"""Source comments, docstrings and UI text say what and why, not what was measured: no timings,
Dice figures, dates or hardware (those live in docs/benchmarks.md, which a comment may name by
section), and no references to documents outside the repository.

Checked: every comment (tokenize) and docstring (ast) under src/promptseg/, every string literal
under src/promptseg/napari/ (tooltips, labels and help text, wherever they are built), and the
``help=`` texts of argparse options anywhere. Other string literals are code (message formats,
unit names) and are not checked.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "promptseg"

FORBIDDEN = {
    "hardware": re.compile(r"\b(H100|H200|A100|V100|RTX ?\d{3,4}|GeForce|EPYC|Xeon)\b"),
    "date": re.compile(r"\b20\d\d-\d\d-\d\d\b"),
    "milliseconds": re.compile(r"\b\d+(\.\d+)?\s?ms\b"),
    "seconds": re.compile(r"\b\d+(\.\d+)?\s?(s|min)\b(?!-)"),
    "Dice figure": re.compile(r"\bDice\s*(of\s*|at\s*|=\s*)?[~≈]?\s*[+-]?\d|[+-]?\b\d+(\.\d+)?\s*(mean\s+)?Dice\b"),
    "measured comparison": re.compile(r"\b\d+\.\d+\s*(vs\.?|against|->|→)\s*\d+(\.\d+)?\b"),
    "speed-up": re.compile(r"\b\d+(\.\d+)?\s?[x×]\s+(faster|slower|float32|as fast)"),
    "outside document": re.compile(r"\.\./shared|seed-methods|DESIGN\.md"),
}


def _string_parts(node: ast.AST) -> list[str]:
    """The literal text of a string expression: constants, f-string pieces, concatenations."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.BinOp):
        return _string_parts(node.left) + _string_parts(node.right)
    return []


def texts(path: Path, root: Path = SRC) -> list[tuple[int, str, str]]:
    """(line, kind, text) of every comment, docstring and checked string literal of ``path``."""
    source = path.read_text(encoding="utf-8")
    out = [(tok.start[0], "comment", tok.string)
           for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT]
    tree = ast.parse(source)
    ui = "napari" in path.relative_to(root).parts
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((node.body[0].lineno, "docstring", doc))
                docs.update({id(node.body[0]), id(node.body[0].value)})
    for node in ast.walk(tree):
        if id(node) in docs:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out.append((node.lineno, "string statement", node.value.value))
        elif ui and isinstance(node, (ast.Constant, ast.JoinedStr)) and _string_parts(node):
            out.append((node.lineno, "UI text", " ".join(_string_parts(node))))
        elif isinstance(node, ast.keyword) and node.arg == "help":
            out.append((node.value.lineno, "help text", " ".join(_string_parts(node.value))))
    return out


def violations(path: Path, root: Path = SRC) -> list[str]:
    found = []
    for line, kind, text in texts(path, root):
        for what, pattern in FORBIDDEN.items():
            m = pattern.search(text)
            if m:
                found.append(f"{path.relative_to(root.parent)}:{line}: {kind} quotes a {what}: {m.group(0)!r}")
    return found


def test_source_comments_docstrings_and_ui_text_carry_no_measurements():
    found = [v for path in sorted(SRC.rglob("*.py")) for v in violations(path)]
    assert not found, "move these to docs/benchmarks.md (a comment may name its section):\n" + "\n".join(found)


def test_the_check_catches_each_kind(tmp_path):
    """The patterns catch what the issue found (and a code string outside napari/ is not text)."""
    pkg = tmp_path / "src" / "promptseg"
    (pkg / "napari").mkdir(parents=True)
    bad = pkg / "napari" / "panel.py"
    bad.write_text('"""Set image: 6.8 vs 17.0 ms on an H200."""\n'
                   'x = 1  # +1.15 Dice on MoNuSeg at 25 % (seed-methods §12.7)\n'
                   'y = 2  # the flow scored 57.45 against 52.98 for copying\n'
                   'TIPS = ("flow", "57.45 mean Dice, measured 2026-11-26")\n'
                   'def f():\n    """See ../shared/DESIGN.md; 2.5x faster than float32; compiles in about 50 s."""\n',
                   encoding="utf-8")
    fine = pkg / "fmt.py"
    fine.write_text('def f(t):\n    """Format a step time."""\n    return f"{t:.1f} ms" + " 12 ms"\n', encoding="utf-8")
    kinds = {v.split(" quotes a ")[1].split(":")[0] for v in violations(bad, pkg)}
    assert violations(fine, pkg) == []
    assert kinds == {"hardware", "date", "milliseconds", "Dice figure", "speed-up", "outside document",
                     "measured comparison", "seconds"}


def test_benchmark_sections_named_in_the_source_exist():
    """A comment that names a docs/benchmarks.md section names one that is there."""
    doc = (SRC.parents[1] / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    headings = [" ".join(line.lstrip("#").split()) for line in doc.splitlines() if line.startswith("#")]
    named = re.compile(r'benchmarks\.md,\s*"([^"]+)"(?:\s+and\s+"([^"]+)")?')
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        for line, _, text in texts(path):
            for m in named.finditer(text):
                for section in filter(None, m.groups()):
                    if not any(" ".join(section.split()) in h for h in headings):
                        missing.append(f"{path.relative_to(SRC.parent)}:{line}: {section!r}")
    assert not missing, "no such section in docs/benchmarks.md:\n" + "\n".join(missing)
