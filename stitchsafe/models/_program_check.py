"""What in a ``.pt2`` program's JSON would run code: expressions, guards, operators, names.

``torch.export.load`` rebuilds a program from ``models/<name>.json``, and several of its
strings become Python code (torch 2.13, ``torch/_export/serde/serialize.py``,
``torch/export/_unlift.py``, ``torch/fx/graph.py``):

- every ``expr_str`` (a symbolic size, ``Symbol('s0', positive=True, integer=True)``) goes
  through ``sympy.sympify``, which ``eval``\\ s it as Python;
- every ``guards_code`` entry (``L['x'].size()[2] >= 3``) is ``exec``\\ d when the program
  becomes a module (``ExportedProgram.module()``);
- a node's ``target`` is resolved by attribute lookup from ``torch``, ``operator`` or
  ``math``, so ``torch.os.system`` or ``torch.ops.import_module`` resolve too, and run
  with the model; ATen's ``from_file`` and ``save`` read and write any file;
- parameter, buffer and subgraph names are pasted into generated code
  (``getattr(self, "<name>")``), so a quote in a name is code.

:func:`program_problem` walks the whole document and allows only what ``torch.export``
itself writes for ordinary networks: expressions and guards that parse to arithmetic over
sizes (checked on their syntax tree, with a fixed list of names), ATen operators and the
control-flow operators, plain names. It runs before anything of the file is unpickled or
evaluated, on untrusted files only.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["program_problem"]

# Names ``sympify`` may call in an ``expr_str`` (sympy's srepr, and torch's sympy functions).
# fmt: off
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Mod", "Abs",
    "floor", "ceiling", "sqrt", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality",
    "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "And", "Or", "Not",
    "Piecewise", "ExprCondPair", "Tuple", "true", "false", "oo", "zoo", "nan", "Infinity",
    "NegativeInfinity", "int_oo", "IntInfinity", "NegativeIntInfinity", "BooleanTrue",
    "BooleanFalse", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv",
    "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow",
    "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat",
    "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity"
})
# fmt: on
# Names a guard may use: the inputs (``L``), builtins and torch's size functions.
# fmt: off
_GUARD_NAMES = frozenset({
    "L", "max", "min", "abs", "int", "float", "round", "IsNonOverlappingAndDenseIndicator",
    "cast_symbool_to_symint_guardless"
})
# fmt: on
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_MATH_FUNCTIONS = frozenset({"floor", "ceil", "trunc", "sqrt", "pow", "fmod", "log2"})

# Operators an untrusted program may call: ATen (but not its file I/O), control flow, and
# the arithmetic on sizes (``_SYM_OPS`` of torch's deserializer).
_ATEN = re.compile(r"torch\.ops\.aten\.(\w+)\.(\w+)")
_ATEN_FILE_IO = frozenset({"from_file", "save"})
_HIGHER_ORDER = frozenset(
    f"torch.ops.higher_order.{name}"
    for name in (
        "cond",
        "while_loop",
        "map_impl",
        "scan",
        "wrap_with_set_grad_enabled",
        "wrap_with_autocast",
        "invoke_subgraph",
    )
)
# fmt: off
_SIZE_OPS = frozenset({
    "_operator.eq", "_operator.ne", "_operator.le", "_operator.ge", "_operator.lt",
    "_operator.gt", "_operator.neg", "_operator.pos", "_operator.mul", "_operator.add",
    "_operator.sub", "_operator.floordiv", "_operator.mod", "_operator.pow",
    "_operator.truediv", "_operator.and_", "_operator.or_", "_operator.lshift",
    "_operator.rshift", "math.trunc", "torch.sym_not", "torch.sym_int", "torch.sym_float",
    "torch.sym_ite", "torch.sym_max", "torch.sym_min", "torch.sym_sqrt"
})
# fmt: on

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_UNSAFE_IN_NAME = re.compile(r"[\"'\\\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def program_problem(doc: Any) -> str | None:
    """The first string in a serialized program that would run code when loaded, or None.

    ``doc`` is the parsed JSON of ``models/<name>.json`` (or of a legacy archive's
    ``serialized_exported_program.json``). The answer names the field and quotes the value.

    >>> program_problem({"guards_code": ["L['x'].size()[2] >= 3"]}) is None
    True
    >>> print(program_problem({"guards_code": ["open('marker', 'w')"]}))
    guards_code entry "open('marker', 'w')" is Python code, not a size condition
    """
    for key, value, parent in _strings(doc):
        problem = _string_problem(key, value, parent)
        if problem is not None:
            return problem
    return None


def _strings(doc: Any) -> Iterator[tuple[str, str, dict[str, Any] | list[Any]]]:
    """Every string of the document (values and keys) with its key and its container."""
    stack: list[tuple[str, Any, Any]] = [("", doc, None)]
    while stack:
        key, value, parent = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                yield "<key>", str(k), value
                stack.append((str(k), v, value))
        elif isinstance(value, list):
            stack.extend((key, v, value) for v in value)
        elif isinstance(value, str):
            yield key, value, parent


def _string_problem(key: str, value: str, parent: Any) -> str | None:
    """What is wrong with one string of the program, by the field it sits in."""
    shown = _shown(value)
    if _CONTROL.search(value):
        return f"field {key!r} holds control characters ({shown})"
    if key == "expr_str" and not _sympy_ok(value):
        return f"symbolic expression {shown} is Python code, not arithmetic over sizes"
    if key == "guards_code" and not _guard_ok(value):
        return f"guards_code entry {shown} is Python code, not a size condition"
    is_node = isinstance(parent, dict) and "inputs" in parent
    if key == "as_operator" or (key == "target" and is_node):
        return _operator_problem(value)
    if (key in ("name", "fqn") or key.endswith("_name")) and _UNSAFE_IN_NAME.search(value):
        return f"name {shown} holds quotes or backslashes, which would become code"
    return None


def _shown(value: str) -> str:
    """A string quoted for a message, cut to 80 characters."""
    cut = value if len(value) <= 80 else value[:77] + "..."
    return '"' + cut.replace('"', "'") + '"' if '"' in cut else f'"{cut}"'


def _operator_problem(target: str) -> str | None:
    """Why a node may not call ``target`` untrusted; None when it may."""
    aten = _ATEN.fullmatch(target)
    if aten is not None:
        if aten.group(1) in _ATEN_FILE_IO:
            return f"the program calls {target}, which reads or writes files"
        return None
    if target in _HIGHER_ORDER or target in _SIZE_OPS:
        return None
    return (
        f"the program calls {_shown(target)}, which is not an ATen operator (a name resolved "
        "from torch, operator or math runs whatever it names)"
    )


# ------------------------------------------------------------------------ syntax trees


def _parse(text: str) -> ast.expr | None:
    """``text`` as one Python expression; None when it is not one."""
    try:
        return ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _sympy_ok(text: str) -> bool:
    """An ``expr_str``: calls of sympy's and torch's size functions on numbers and symbols."""
    tree = _parse(text)
    return tree is not None and _sympy_node_ok(tree)


def _sympy_node_ok(node: ast.AST) -> bool:
    """One node of an ``expr_str``'s tree, and everything below it."""
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float, bool)
    if isinstance(node, ast.Name):
        return node.id in _SYMPY_NAMES
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.USub | ast.UAdd) and _sympy_node_ok(node.operand)
    if isinstance(node, ast.BinOp):
        return (
            isinstance(node.op, _ARITHMETIC)
            and _sympy_node_ok(node.left)
            and _sympy_node_ok(node.right)
        )
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return False
    name = node.func.id
    if name not in _SYMPY_NAMES:
        return False
    for i, arg in enumerate(node.args):
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            pattern = _IDENTIFIER if name == "Symbol" else _NUMBER
            if i != 0 or name not in ("Symbol", "Integer", "Float", "Rational"):
                return False
            if not pattern.fullmatch(arg.value):
                return False
        elif not _sympy_node_ok(arg):
            return False
    return all(
        kw.arg is not None
        and not kw.arg.startswith("_")
        and isinstance(kw.value, ast.Constant)
        and type(kw.value.value) in (bool, int)
        for kw in node.keywords
    )


def _guard_ok(text: str) -> bool:
    """A ``guards_code`` entry: comparisons and arithmetic over the inputs' sizes."""
    tree = _parse(text)
    return tree is not None and _guard_node_ok(tree)


def _guard_node_ok(node: ast.AST) -> bool:  # noqa: PLR0911 - one return per kind of node
    """One node of a guard's tree, and everything below it."""
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float, bool) or node.value is None
    if isinstance(node, ast.Name):
        return node.id in _GUARD_NAMES
    if isinstance(node, ast.BoolOp):
        return all(_guard_node_ok(v) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.Not | ast.USub | ast.UAdd) and _guard_node_ok(node.operand)
    if isinstance(node, ast.BinOp):
        return (
            isinstance(node.op, _ARITHMETIC)
            and _guard_node_ok(node.left)
            and _guard_node_ok(node.right)
        )
    if isinstance(node, ast.Compare):
        return all(isinstance(op, _COMPARISONS) for op in node.ops) and all(
            _guard_node_ok(v) for v in (node.left, *node.comparators)
        )
    if isinstance(node, ast.IfExp):
        return all(_guard_node_ok(v) for v in (node.test, node.body, node.orelse))
    if isinstance(node, ast.Subscript):
        key = node.slice
        key_ok = (
            isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and _IDENTIFIER.fullmatch(key.value) is not None
        ) or _guard_node_ok(key)
        return key_ok and _guard_node_ok(node.value)
    if isinstance(node, ast.Call):
        return (
            not node.keywords
            and _callee_ok(node.func)
            and all(_guard_node_ok(a) for a in node.args)
        )
    return False


def _callee_ok(func: ast.expr) -> bool:
    """What a guard may call: a listed name, ``math.<fn>``, or a tensor's size method."""
    if isinstance(func, ast.Name):
        return func.id in _GUARD_NAMES and func.id != "L"
    if not isinstance(func, ast.Attribute):
        return False
    if isinstance(func.value, ast.Name) and func.value.id == "math":
        return func.attr in _MATH_FUNCTIONS
    return func.attr in _GUARD_METHODS and _guard_node_ok(func.value)
