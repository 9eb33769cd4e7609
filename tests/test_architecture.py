"""The package's shape (docs/architecture.md, "Rules"): small modules and functions.

Layers, cycles and private modules are import-linter's job (``lint-imports`` in CI);
parameters, statements and complexity are ruff's. What neither tool measures is kept here:
lines per module and per function, with the few justified exceptions named below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stitchsafe"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# "module:function" -> why it may be longer than MAX_FUNCTION_LINES.
# The public facade functions keep one keyword per option, each documented (numpydoc):
# their bodies only build the settings values and hand them down.
LONG_FUNCTIONS: dict[str, str] = {
    "prediction._predict:predict": "public keywords and their docs; builds PredictSettings",
    "labels._segment:segment": "public keywords and their docs; builds LabelSettings",
    "reports._check:check_stitching": "public keywords and their docs; builds the settings",
    "training._train:train": "public keywords and their docs; builds TrainingSettings",
    "training._cells:synthetic_cells": "public keywords and their docs; the body passes one "
    "grouped value to its steps",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def _functions(tree: ast.AST) -> list[tuple[str, int]]:
    """``(qualified name, lines from def to end)`` of every function, methods included.

    Decorators are not counted (a command's stack of options is not its body).
    """
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                out.append((name, (child.end_lineno or child.lineno) - child.lineno + 1))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return out


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines; split it by idea"


def test_functions_are_small() -> None:
    long = {}
    for path in _modules():
        for name, lines in _functions(ast.parse(path.read_text())):
            key = f"{_name(path)}:{name}"
            if lines > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS:
                long[key] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_exceptions_are_still_needed() -> None:
    # An exception whose function shrank or vanished is dropped from the list, not kept.
    sizes = {
        f"{_name(path)}:{name}": lines
        for path in _modules()
        for name, lines in _functions(ast.parse(path.read_text()))
    }
    stale = [k for k in LONG_FUNCTIONS if sizes.get(k, 0) <= MAX_FUNCTION_LINES]
    assert not stale, f"no longer over the limit, remove from LONG_FUNCTIONS: {stale}"


def test_the_limits_catch_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"def f():\n{body}\n")
    assert _functions(tree) == [("f", MAX_FUNCTION_LINES + 1)]
