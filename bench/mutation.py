"""Mutation score of the pure core: ``python -m bench.mutation`` (or ``tox -e mutation``).

    python -m bench.mutation                                     # every module in MODULES (~10 min, 2 cores)
    python -m bench.mutation --module stage1/core/format.py      # one module
    python -m bench.mutation --module stage1/core/format.py --lines 140-170   # mutants on those lines only
    python -m bench.mutation --json /tmp/mutation.json           # also write every mutant's outcome

Each module is mutated one change at a time (an operator swapped, a boundary moved, a constant or a
string altered, a value replaced by None, a keyword argument dropped, ``break`` <-> ``continue``)
and its own unit tests, listed in MODULES, are run against each mutant. A mutant is *killed* when a
test fails (or it runs past its time limit), *survived* when every test that reaches the changed
code passes, and *no test* when no test reaches it. The score is killed / mutants.

Why a runner of our own rather than mutmut 3: mutmut 3 rewrites every function into a trampoline
in a copied tree and starts a fresh pytest session per mutant, so the session fixtures (the real
Qwen2 tokenizer built from its vocabulary) are rebuilt for every mutant and each module needs its
own test selection in its config. Here one pytest session collects every mapped test file, runs them
once (recording which functions each test reaches, and how long it takes), and then forks once per
mutant: the child swaps the mutated function's code object into the live function (so every
``from module import name`` sees it; a mutated constant is rebound wherever it was imported),
runs only the tests that reach it, fastest first, and stops at the first failure. Session fixtures are built once per run and inherited by every child.

What it does not mutate: docstrings, annotations, decorators, imports, f-strings, and statements of
a class body other than its methods (a dataclass field default is baked into the generated
``__init__`` and cannot be swapped in place). One worker: mutants run one after another.
This reports, it does not gate: the exit status is 0 whatever the score (2 when the baseline fails).
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each pure module, by path from the repository root, and the unit tests that are its own. The
# runner reads paths from this table only: when a module or a test file moves, change it here.
MODULES: dict[str, tuple[str, ...]] = {
    "stage1/core/stats.py": ("tests/unit/core/test_stats.py",),
    "stage1/core/format.py": ("tests/unit/core/test_format.py",),
    "stage1/core/masking.py": ("tests/unit/core/test_masking.py",),
    "stage1/core/text_keys.py": ("tests/unit/core/test_text_keys.py",),
    "stage1/core/splits.py": ("tests/unit/sft_data/test_sft_data.py", "tests/unit/pairs/test_pairs.py"),
    "stage1/core/criteria.py": ("tests/unit/core/test_criteria.py",),
    "stage1/negatives/mix.py": ("tests/unit/negatives/test_negatives.py",),
    "stage1/negatives/repeats.py": ("tests/unit/negatives/test_negatives.py",),
}

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


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | timeout | survived | no test | error
    tests_run: int = 0
    killed_by: str = ""


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


def list_mutants(path: str) -> list[Mutant]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
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


def apply_mutant(mutant: Mutant) -> None:
    """Swap the mutant into the imported module, in this process (called in a forked child).

    A function or method gets the mutated code object; a top-level statement is re-run in the module's
    namespace, followed by the top-level assignments after it (constants built from it).
    """
    module = sys.modules[module_name(mutant.module)]
    source = (ROOT / mutant.module).read_text(encoding="utf-8")
    tree = ast.parse(source)
    mutator = _Mutator(target=mutant.index)
    mutator.visit(tree)
    index = mutator.applied_statement
    if index is None:
        raise RuntimeError(f"mutant {mutant.index} of {mutant.module} was not found")
    filename = str(ROOT / mutant.module)
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
            if hasattr(old, "cache_clear"):
                old.cache_clear()
        return
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


_MISSING = object()


class ImportFails(Exception):
    """The mutated module's own top-level code raises: importing it would fail, so every test would."""


def _run_module_code(statements: list[ast.stmt], filename: str, namespace: dict) -> None:
    try:
        exec(compile(ast.Module(body=statements, type_ignores=[]), filename, "exec"), namespace)  # noqa: S102
    except Exception as error:
        raise ImportFails(f"{type(error).__name__}: {error}") from error


class _KeepSession:
    """Stands for 'the next item' so pytest tears down everything but the session (its fixtures stay)."""

    def __init__(self, session):
        self.session = session

    def listchain(self):
        return [self.session]


@dataclass
class _Baseline:
    durations: dict[str, float] = field(default_factory=dict)
    reached: dict[str, set[tuple[str, int]]] = field(default_factory=dict)  # test -> (file, first line) of code
    failed: list[str] = field(default_factory=list)


class MutationPlugin:
    """Runs inside one pytest session: the baseline once, then one forked child per mutant."""

    def __init__(self, modules: list[str], lines: tuple[int, int] | None):
        self.modules = modules
        self.lines = lines
        self.outcomes: list[Outcome] = []
        self.baseline_failed = False

    def pytest_runtestloop(self, session) -> bool:
        from _pytest.runner import runtestprotocol

        keep = _KeepSession(session)
        items = list(session.items)
        baseline = self._baseline(items, keep, runtestprotocol)
        if baseline.failed:
            print(f"baseline: {len(baseline.failed)} test(s) fail unmutated: {', '.join(baseline.failed)}")
            self.baseline_failed = True
            return True
        for path in self.modules:
            self._mutate_module(path, items, baseline, keep, runtestprotocol)
        return True

    def _baseline(self, items, keep, runtestprotocol) -> _Baseline:
        targets = {str(ROOT / path) for path in self.modules}
        baseline = _Baseline()
        reached: set[tuple[str, int]] = set()

        def trace(frame, event, arg):
            code = frame.f_code
            if code.co_filename in targets:
                reached.add((code.co_filename, code.co_firstlineno))
            return None

        print(f"baseline: running {len(items)} tests once, recording what each reaches ...", flush=True)
        for position, item in enumerate(items):
            nextitem = items[position + 1] if position + 1 < len(items) else keep
            reached.clear()
            start = time.perf_counter()
            sys.settrace(trace)
            try:
                reports = runtestprotocol(item, log=False, nextitem=nextitem)
            finally:
                sys.settrace(None)
            baseline.durations[item.nodeid] = time.perf_counter() - start
            baseline.reached[item.nodeid] = set(reached)
            if any(report.failed for report in reports):
                baseline.failed.append(item.nodeid)
        return baseline

    def _mutate_module(self, path, items, baseline, keep, runtestprotocol) -> None:
        own = {ROOT / test for test in MODULES[path]}
        own_items = [item for item in items if Path(str(item.path)) in own]
        units = _unit_lines(path)
        filename = str(ROOT / path)
        reaching: dict[str, list] = {}
        for item in own_items:
            for file, first_line in baseline.reached[item.nodeid]:
                if file == filename:
                    for unit in _units_at(units, first_line):
                        reaching.setdefault(unit, []).append(item)
        mutants = list_mutants(path)
        if self.lines:
            mutants = [m for m in mutants if self.lines[0] <= m.line <= self.lines[1]]
        print(f"{path}: {len(mutants)} mutants against {len(own_items)} tests", flush=True)
        started = time.perf_counter()
        for done, mutant in enumerate(mutants, start=1):
            if done % 50 == 0:
                mine = [o.status for o in self.outcomes if o.mutant.module == path]
                print(f"  {done}/{len(mutants)}: {sum(s in SCORED for s in mine)} killed, "
                      f"{len(mine) - sum(s in SCORED for s in mine)} not, {time.perf_counter() - started:.0f} s", flush=True)
            chosen = own_items if mutant.unit == "<module>" else reaching.get(mutant.unit, [])
            chosen = sorted(chosen, key=lambda item: baseline.durations[item.nodeid])
            if not chosen:
                self.outcomes.append(Outcome(mutant, "no test"))
                continue
            budget = 10 + 5 * sum(baseline.durations[item.nodeid] for item in chosen)
            self.outcomes.append(_run_child(mutant, chosen, keep, runtestprotocol, budget))
        print(f"{path}: done in {time.perf_counter() - started:.0f} s", flush=True)


def _run_child(mutant, chosen, keep, runtestprotocol, budget: float) -> Outcome:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: mutate, run the chosen tests, report through the pipe, never return
        os.close(read_end)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # past the budget the kernel ends the child
        signal.alarm(max(1, int(budget)))
        try:
            result = _test_mutant(mutant, chosen, keep, runtestprotocol)
        except BaseException as error:  # noqa: BLE001 - a mutant that breaks the harness is reported, not raised
            result = {"status": "error", "ran": 0, "killer": f"{type(error).__name__}: {error}"}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    if not message:  # ended by the alarm (or by a signal of its own making): it did not pass
        return Outcome(mutant, "timeout" if os.WIFSIGNALED(wait_status) else "error")
    result = json.loads(message)
    return Outcome(mutant, result["status"], result["ran"], result["killer"])


def _test_mutant(mutant, chosen, keep, runtestprotocol) -> dict:
    """In the child: swap the mutant in and run the chosen tests until one fails."""
    try:
        apply_mutant(mutant)
    except ImportFails as error:
        return {"status": "killed", "ran": 0, "killer": f"import fails: {error}"}
    for position, item in enumerate(chosen):
        nextitem = chosen[position + 1] if position + 1 < len(chosen) else keep
        if any(report.failed for report in runtestprotocol(item, log=False, nextitem=nextitem)):
            return {"status": "killed", "ran": position + 1, "killer": item.nodeid}
    return {"status": "survived", "ran": len(chosen), "killer": ""}


def _unit_lines(path: str) -> dict[str, tuple[int, int]]:
    """Each function and method of the module: its first line (decorators included) and its last."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
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


def _units_at(units: dict[str, tuple[int, int]], line: int) -> list[str]:
    return [name for name, (first, last) in units.items() if first <= line <= last]


SCORED = ("killed", "timeout")


def summary(outcomes: list[Outcome], modules: list[str]) -> list[dict]:
    rows = []
    for path in modules:
        mine = [o for o in outcomes if o.mutant.module == path]
        killed = sum(o.status in SCORED for o in mine)
        rows.append({
            "module": path,
            "mutants": len(mine),
            "killed": killed,
            "survived": sum(o.status in ("survived", "error") for o in mine),
            "no test": sum(o.status == "no test" for o in mine),
            "score": 100.0 * killed / len(mine) if mine else 100.0,
        })
    total = {key: sum(row[key] for row in rows) for key in ("mutants", "killed", "survived", "no test")}
    total["module"] = "all"
    total["score"] = 100.0 * total["killed"] / total["mutants"] if total["mutants"] else 100.0
    return rows + [total]


def print_report(outcomes: list[Outcome], modules: list[str]) -> None:
    print()
    print("| module | mutants | killed | survived | no test | score |")
    print("|---|---|---|---|---|---|")
    for row in summary(outcomes, modules):
        print(
            f"| {row['module']} | {row['mutants']} | {row['killed']} | {row['survived']} | {row['no test']} "
            f"| {row['score']:.1f}% |"
        )
    timeouts = [o for o in outcomes if o.status == "timeout"]
    if timeouts:  # counted as killed: shown so that a machine too loaded for the time limit is noticed
        print(f"\ntimed out (counted killed): {', '.join(f'{o.mutant.module}:{o.mutant.line}' for o in timeouts)}")
    left = [o for o in outcomes if o.status not in SCORED]
    if left:
        print(f"\nsurvivors ({len(left)}):")
    sources: dict[str, list[str]] = {}
    for outcome in left:
        mutant = outcome.mutant
        lines = sources.setdefault(mutant.module, (ROOT / mutant.module).read_text(encoding="utf-8").splitlines())
        code = lines[mutant.line - 1].strip() if 0 < mutant.line <= len(lines) else ""
        note = f" [{outcome.killed_by}]" if outcome.status == "error" else ""
        print(f"  {mutant.module}:{mutant.line} {mutant.unit}: {mutant.change} ({outcome.status}){note}  | {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="only this module (repeatable)")
    parser.add_argument("--lines", help="only mutants on lines A-B of the module(s)")
    parser.add_argument("--json", type=Path, help="also write every mutant's outcome here")
    args = parser.parse_args(argv)
    modules = args.module or list(MODULES)
    lines = tuple(int(part) for part in args.lines.split("-", 1)) if args.lines else None
    for name, value in {
        "HYPOTHESIS_PROFILE": "ci", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        # One thread: a forked child must not inherit an OpenMP pool (libgomp hangs after fork).
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }.items():
        os.environ.setdefault(name, value)
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import pytest

    tests = sorted({test for path in modules for test in MODULES[path]})
    plugin = MutationPlugin(modules, lines)
    started = time.perf_counter()
    pytest.main(["-q", "-p", "no:cacheprovider", "-m", "not slow", *tests], plugins=[plugin])
    if plugin.baseline_failed:
        return 2
    print_report(plugin.outcomes, modules)
    print(f"\n{len(plugin.outcomes)} mutants in {time.perf_counter() - started:.0f} s; "
          f"{time.strftime('%Y-%m-%d', time.gmtime())}")
    if args.json:
        args.json.write_text(json.dumps(
            {"summary": summary(plugin.outcomes, modules), "outcomes": [asdict(o) for o in plugin.outcomes]},
            indent=1,
        ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
