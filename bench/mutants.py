"""Mutants of one Python module: where a line can be changed, and swapping one change into the live module.

Used by ``bench.mutation``. The walk (``_Mutator``) numbers every mutation point of a module in a
fixed order; ``list_mutants`` lists them and ``apply_mutant`` applies the k-th one to the imported
module, in the calling process (the runner calls it in a forked child): a function or method gets
the mutated code object, so every reference taken before sees it, and a top-level statement is run
again in the module's namespace and rebound wherever its names were imported. A function that the
module's top-level code calls at import (a builder of a constant) gets its mutated code and then the
top-level statements that call it are run again, so what it built is built by the mutant.
"""

from __future__ import annotations

import ast
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

_BINOP_SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitAnd,
}
_COMPARE_SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_NAME_SWAPS = {
    "lower": "upper", "upper": "lower", "lstrip": "rstrip", "rstrip": "lstrip", "startswith": "endswith",
    "endswith": "startswith", "find": "rfind", "rfind": "find", "index": "rindex", "rindex": "index",
    "split": "rsplit", "rsplit": "split", "partition": "rpartition", "rpartition": "partition",
    "removeprefix": "removesuffix", "removesuffix": "removeprefix", "min": "max", "max": "min",
    "any": "all", "all": "any",
}
_SYMBOLS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
    ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Lt: "<",
    ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in",
    ast.Is: "is", ast.IsNot: "is not",
}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the index-th mutation point of the module, in the walk order of _Mutator
    line: int
    change: str
    unit: str  # "name" or "Class.name" for code in a function, "<module>" for a top-level statement


class _Mutator(ast.NodeTransformer):
    """Walks a module's tree in a fixed order, numbering every mutation point.

    With ``target`` None it only records the points; with ``target`` k it applies the k-th one and
    leaves the rest untouched, so the numbering of one walk is the numbering of the other.
    """

    def __init__(self, target: int | None = None):
        self.target = target
        self.points: list[tuple[int, str, str]] = []  # (line, change, unit)
        self.applied_statement: int | None = None
        self._unit = "<module>"
        self._statement = 0

    def _point(self, node: ast.AST, change: str) -> bool:
        """Record one mutation point; True when it is the one to apply."""
        self.points.append((getattr(node, "lineno", 0), change, self._unit))
        if self.target is not None and len(self.points) - 1 == self.target:
            self.applied_statement = self._statement
            return True
        return False

    def visit(self, node):
        # A docstring wrapped in _Untouched comes back as itself when a body is rebuilt.
        return node.node if isinstance(node, _Untouched) else super().visit(node)

    # ---- structure: what is walked, and under which unit
    def visit_Module(self, node: ast.Module) -> ast.Module:
        body = _without_docstring(node.body)
        for index, statement in enumerate(node.body):
            self._statement = index
            if statement not in body or isinstance(statement, ast.Import | ast.ImportFrom):
                continue
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                self._unit = statement.name
                self._function(statement)
            elif isinstance(statement, ast.ClassDef):
                for member in _without_docstring(statement.body):
                    if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                        self._unit = f"{statement.name}.{member.name}"
                        self._function(member)
            elif not _is_dunder_all(statement):
                self._unit = "<module>"
                node.body[index] = self.visit(statement)
        return node

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for position, default in enumerate(node.args.defaults):
            node.args.defaults[position] = self.visit(default)
        for position, default in enumerate(node.args.kw_defaults):
            if default is not None:
                node.args.kw_defaults[position] = self.visit(default)
        node.body = [self.visit(statement) for statement in _without_docstring(node.body, keep=True)]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:  # nested functions
        self._function(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:  # a class defined inside a function
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.JoinedStr:
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:  # annotations of lambda/def arguments
        return node

    # ---- the mutations
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swap = _BINOP_SWAPS.get(type(node.op))
        if swap and self._point(node, f"'{_SYMBOLS[type(node.op)]}' -> '{_SYMBOLS[swap]}'"):
            node.op = swap()
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        symbol = _SYMBOLS.get(type(node.op), "?")
        swap = _BINOP_SWAPS.get(type(node.op))
        if swap and self._point(node, f"'{symbol}=' -> '{_SYMBOLS[swap]}='"):
            node.op = swap()
        if self._point(node, f"'{symbol}=' -> '='"):
            return ast.copy_location(ast.Assign(targets=[_as_store(node.target)], value=node.value), node)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for position, operator in enumerate(node.ops):
            swap = _COMPARE_SWAPS[type(operator)]
            if self._point(node, f"'{_SYMBOLS[type(operator)]}' -> '{_SYMBOLS[swap]}'"):
                node.ops[position] = swap()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        before, after = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        if self._point(node, f"'{before}' -> '{after}'"):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._point(node, "'not x' -> 'x'"):
            return node.operand
        if isinstance(node.op, ast.USub) and self._point(node, "'-x' -> 'x'"):
            return node.operand
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._point(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int | float):
            if self._point(node, f"{value!r} -> {value + 1!r}"):
                return ast.copy_location(ast.Constant(value + 1), node)
        elif isinstance(value, str):
            if self._point(node, f"{_short(value)} -> {_short('XX' + value + 'XX')}"):
                return ast.copy_location(ast.Constant("XX" + value + "XX"), node)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if node.value is not None and not _is_none(node.value) and self._point(node, "return value -> None"):
            node.value = ast.copy_location(ast.Constant(None), node.value)
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        self.generic_visit(node)
        if not _is_none(node.value) and self._point(node, f"'{_targets(node)} = ...' -> '{_targets(node)} = None'"):
            node.value = ast.copy_location(ast.Constant(None), node.value)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        swap = _NAME_SWAPS.get(name) if name else None
        if swap in ("split", "rsplit") and len(node.args) < 2 and not node.keywords:
            swap = None  # without maxsplit the two give the same list: an equivalent mutant by construction
        if swap and self._point(node, f"{name}() -> {swap}()"):
            if isinstance(node.func, ast.Attribute):
                node.func.attr = swap
            else:
                node.func.id = swap
        for position, keyword in enumerate(list(node.keywords)):
            if keyword.arg is not None and self._point(node, f"drop {keyword.arg}= from {name or 'call'}()"):
                del node.keywords[position]
                break
        return node

    def visit_Break(self, node: ast.Break) -> ast.AST:
        if self._point(node, "break -> continue"):
            return ast.copy_location(ast.Continue(), node)
        return node

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        if self._point(node, "continue -> break"):
            return ast.copy_location(ast.Break(), node)
        return node


def _without_docstring(body: list[ast.stmt], keep: bool = False) -> list[ast.stmt]:
    """The statements of a body less its docstring (with ``keep``, the docstring stays, unwalked)."""
    has_doc = body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
    has_doc = has_doc and isinstance(body[0].value.value, str)
    if not has_doc:
        return list(body)
    return [_Untouched(body[0])] + body[1:] if keep else body[1:]


class _Untouched:
    """Wraps a docstring so the walk passes it by (visit returns the wrapped node itself)."""

    def __init__(self, node: ast.stmt):
        self.node = node


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _is_dunder_all(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in statement.targets)


def _as_store(target: ast.AST) -> ast.AST:
    target = copy.deepcopy(target)
    target.ctx = ast.Store()
    return target


def _targets(node: ast.Assign) -> str:
    return ", ".join(ast.unparse(target) for target in node.targets)[:40]


def _short(text: str) -> str:
    return repr(text if len(text) <= 30 else text[:27] + "...")


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def list_mutants(path: str, root: Path) -> list[Mutant]:
    """Every mutant of the module at ``root / path``, in walk order."""
    tree = ast.parse((root / path).read_text(encoding="utf-8"))
    mutator = _Mutator()
    mutator.visit(tree)
    return [Mutant(path, index, line, change, unit) for index, (line, change, unit) in enumerate(mutator.points)]


def _unwrap(function):
    while hasattr(function, "__wrapped__"):
        function = function.__wrapped__
    return function


def _swap_code(old, new) -> None:
    """Give the live function ``old`` the mutated code and defaults of ``new``."""
    old, new = _unwrap(old), _unwrap(new)
    old.__code__ = new.__code__
    old.__defaults__ = new.__defaults__
    old.__kwdefaults__ = new.__kwdefaults__


def _functions_of(attribute) -> list:
    if isinstance(attribute, staticmethod | classmethod):
        return [attribute.__func__]
    if isinstance(attribute, property):
        return [f for f in (attribute.fget, attribute.fset, attribute.fdel) if f is not None]
    return [attribute]


def apply_mutant(mutant: Mutant, root: Path) -> None:
    """Swap the mutant into the imported module, in this process (called in a forked child).

    A function or method gets the mutated code object; a top-level statement is re-run in the module's
    namespace, followed by the top-level assignments after it (constants built from it). A function the
    top-level code calls at import is swapped, then the first top-level statement that calls it (and
    the assignments after) run again. A function whose default is a constant's name gets the constant's
    new value as its default, and every ``lru_cache`` of the package starts empty.
    """
    module = sys.modules[module_name(mutant.module)]
    source = (root / mutant.module).read_text(encoding="utf-8")
    tree = ast.parse(source)
    mutator = _Mutator(target=mutant.index)
    mutator.visit(tree)
    index = mutator.applied_statement
    if index is None:
        raise RuntimeError(f"mutant {mutant.index} of {mutant.module} was not found")
    filename = str(root / mutant.module)
    for function in cached_functions([mutant.module]):  # a cached result of the unmutated code is not served
        function.cache_clear()
    statement = tree.body[index]
    scratch = dict(module.__dict__)
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        _run_module_code([statement], filename, scratch)
        old, new = module.__dict__[statement.name], scratch[statement.name]
        if isinstance(statement, ast.ClassDef):
            member = mutant.unit.split(".", 1)[1]
            for old_function, new_function in zip(
                _functions_of(old.__dict__[member]), _functions_of(new.__dict__[member]), strict=True
            ):
                _swap_code(old_function, new_function)
        else:
            _swap_code(old, new)
            builders = _import_time_functions(tree)
            if statement.name in builders:  # run at import: what it built is built again, by the mutant
                first = min(i for i, s in enumerate(tree.body) if _calls_at_import(s, builders))
                _rerun_top_level(module, tree, first, filename)
        return
    _rerun_top_level(module, tree, index, filename)


def _rerun_top_level(module, tree: ast.Module, index: int, filename: str) -> None:
    """Run top-level statement ``index`` again, then the top-level assignments after it, and rebind the
    names that changed wherever another module imported them."""
    statement = tree.body[index]
    rerun = [statement] + [s for s in tree.body[index + 1 :] if isinstance(s, ast.Assign | ast.AnnAssign)]
    before = dict(module.__dict__)
    _run_module_code(rerun, filename, module.__dict__)
    # A constant imported by name elsewhere (``from stage1.format import STOP_STRINGS``, in a test or
    # in another module) would have been bound to the mutated value at import: rebind those too.
    changed = {name: old for name, old in before.items() if module.__dict__.get(name) is not old}
    for other in list(sys.modules.values()):
        namespace = getattr(other, "__dict__", None)
        if other is module or not isinstance(namespace, dict):
            continue
        for name, old in changed.items():
            if namespace.get(name, _MISSING) is old:
                namespace[name] = module.__dict__[name]
    _rebind_defaults(module, tree, set(changed))


def _rebind_defaults(module, tree: ast.Module, names: set[str]) -> None:
    """A default written as a constant's name (``power: float = DEFAULT_POWER``) was evaluated when
    its function was defined: give the live function the constant's new value, as an edited file would."""
    if not names:
        return
    namespace = module.__dict__
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            _rebind_function_defaults(namespace.get(statement.name), statement, namespace, names)
        elif isinstance(statement, ast.ClassDef) and isinstance(namespace.get(statement.name), type):
            members = namespace[statement.name].__dict__
            for node in statement.body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in members:
                    for function in _functions_of(members[node.name]):
                        _rebind_function_defaults(function, node, namespace, names)


def _rebind_function_defaults(function, node: ast.FunctionDef | ast.AsyncFunctionDef, namespace: dict, names: set[str]) -> None:
    function = _unwrap(function)
    if not hasattr(function, "__defaults__"):
        return
    defaults = list(function.__defaults__ or ())
    if len(defaults) == len(node.args.defaults):
        for position, default in enumerate(node.args.defaults):
            if isinstance(default, ast.Name) and default.id in names:
                defaults[position] = namespace[default.id]
        function.__defaults__ = tuple(defaults) or None
    keywords = dict(function.__kwdefaults__ or {})
    for argument, default in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True):
        if isinstance(default, ast.Name) and default.id in names and argument.arg in keywords:
            keywords[argument.arg] = namespace[default.id]
    function.__kwdefaults__ = keywords or None


def cached_functions(paths: list[str]) -> list:
    """The ``functools.lru_cache`` functions at the top level of every imported module of the packages
    that hold ``paths`` (``stage1/core/text_keys.py`` -> every ``stage1.*`` module).

    Their caches are cleared before each baseline test, so that the trace sees every test that calls
    them (a result cached by an earlier test never enters the function), and in each mutant's child,
    so that no result of the unmutated code is served to the mutant's tests (a cache of another
    module, too, may hold a result computed with the mutated one).
    """
    packages = {path.split("/", 1)[0] for path in paths}
    found = []
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".", 1)[0] not in packages:
            continue
        for value in list(vars(module).values()):
            if hasattr(value, "cache_clear") and getattr(value, "__module__", None) == name:
                found.append(value)
    return found


_MISSING = object()


def _top_level_functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)}


def _called_in(node: ast.AST) -> set[str]:
    """Names called in ``node`` (``f(...)``; a mere reference, as in a registry dict, is not a call)."""
    return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _calls_at_import(statement: ast.stmt, functions: set[str]) -> bool:
    """Whether a top-level statement (not a definition, not an import) calls one of ``functions``."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Import | ast.ImportFrom):
        return False
    return bool(_called_in(statement) & functions)


def _import_time_functions(tree: ast.Module) -> set[str]:
    """Top-level functions that the module's own top-level code runs at import (a pattern built by
    ``_alternatives(...)`` in a constant), directly or through one another."""
    functions = _top_level_functions(tree)
    found = {name for s in tree.body if _calls_at_import(s, set(functions)) for name in _called_in(s) & set(functions)}
    pending = list(found)
    while pending:
        for name in _called_in(functions[pending.pop()]) & set(functions):
            if name not in found:
                found.add(name)
                pending.append(name)
    return found


def import_time_functions(path: str, root: Path) -> set[str]:
    """The functions of the module at ``root / path`` that its top-level code runs at import."""
    return _import_time_functions(ast.parse((root / path).read_text(encoding="utf-8")))


class ImportFails(Exception):
    """The mutated module's own top-level code raises: importing it would fail, so every test would."""


def _run_module_code(statements: list[ast.stmt], filename: str, namespace: dict) -> None:
    try:
        exec(compile(ast.Module(body=statements, type_ignores=[]), filename, "exec"), namespace)  # noqa: S102
    except Exception as error:
        raise ImportFails(f"{type(error).__name__}: {error}") from error


def unit_lines(path: str, root: Path) -> dict[str, tuple[int, int]]:
    """Each function and method of the module: its first line (decorators included) and its last."""
    tree = ast.parse((root / path).read_text(encoding="utf-8"))
    units: dict[str, tuple[int, int]] = {}

    def span(node) -> tuple[int, int]:
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        return first, node.end_lineno

    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            units[statement.name] = span(statement)
        elif isinstance(statement, ast.ClassDef):
            for member in statement.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    units[f"{statement.name}.{member.name}"] = span(member)
    return units


def units_at(units: dict[str, tuple[int, int]], line: int) -> list[str]:
    return [name for name, (first, last) in units.items() if first <= line <= last]
