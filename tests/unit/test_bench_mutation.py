"""The mutation runner (``python -m bench.mutation``): what it mutates, and that a mutant reaches the
code under test the way an edited file would (through every ``from module import name``)."""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap

import pytest

from bench import mutation
from bench.mutants import Mutant, _Mutator, apply_mutant, list_mutants
from bench.mutation import MODULES

SOURCE = textwrap.dedent('''
    """Module docstring."""
    LIMIT = 3
    DOUBLE = LIMIT * 2


    def over(n: int = 1) -> bool:
        """Docstring."""
        return n >= LIMIT


    class Box:
        size: int = 4

        def fits(self, n):
            return n < DOUBLE
''')


def test_every_module_and_test_file_in_the_table_exists():
    """The table is the runner's only source of paths: a module or test file moved without it fails here."""
    for module, tests in MODULES.items():
        assert (mutation.ROOT / module).is_file(), module
        assert tests and all((mutation.ROOT / test).is_file() for test in tests), tests


def test_points_cover_operators_constants_and_returns_but_not_docstrings_annotations_or_class_fields():
    mutator = _Mutator()
    mutator.visit(ast.parse(SOURCE))
    changes = [(line, change, unit) for line, change, unit in mutator.points]
    assert (9, "'>=' -> '>'", "over") in changes
    assert (9, "return value -> None", "over") in changes
    assert (3, "3 -> 4", "<module>") in changes
    assert (7, "1 -> 2", "over") in changes, "a default argument is mutated"
    assert (16, "'<' -> '<='", "Box.fits") in changes
    assert not any("Docstring" in change or "int" in change for _, change, _ in changes)
    assert not any(line == 13 for line, _, _ in changes), "a class-body field (its default) is left alone"


def test_applying_point_k_changes_that_point_only():
    original = ast.unparse(ast.parse(SOURCE))
    mutator = _Mutator()
    mutator.visit(ast.parse(SOURCE))
    index = [change for _, change, _ in mutator.points].index("'>=' -> '>'")
    tree = ast.parse(SOURCE)
    _Mutator(target=index).visit(tree)
    assert ast.unparse(tree) == original.replace("n >= LIMIT", "n > LIMIT")


@pytest.fixture
def scratch_module(tmp_path, monkeypatch):
    (tmp_path / "scratchpkg").mkdir()
    (tmp_path / "scratchpkg" / "__init__.py").write_text("")
    (tmp_path / "scratchpkg" / "mod.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("scratchpkg.mod")
    module.root = tmp_path
    yield module
    for name in ("scratchpkg.mod", "scratchpkg"):
        sys.modules.pop(name, None)


def _apply(module, change: str) -> None:
    mutant: Mutant = next(m for m in list_mutants("scratchpkg/mod.py", module.root) if m.change == change)
    apply_mutant(mutant, module.root)


def test_a_mutated_function_is_seen_through_references_taken_before(scratch_module):
    over, box = scratch_module.over, scratch_module.Box()
    assert over(3) and not box.fits(6)
    _apply(scratch_module, "'>=' -> '>'")
    assert not over(3), "the live function object got the mutated code"
    _apply(scratch_module, "'<' -> '<='")
    assert box.fits(6), "a method too"


def test_a_mutated_constant_is_rebound_wherever_it_was_imported(scratch_module, monkeypatch):
    importer = type(sys)("scratch_importer")
    importer.LIMIT = scratch_module.LIMIT
    monkeypatch.setitem(sys.modules, "scratch_importer", importer)
    _apply(scratch_module, "3 -> 4")
    assert (scratch_module.LIMIT, scratch_module.DOUBLE, importer.LIMIT) == (4, 8, 4)
    assert not scratch_module.over(3)


BUILDER_SOURCE = textwrap.dedent('''
    WORDS = ("a", "b")


    def _joined(words):
        return "|".join(words)


    def _pattern():
        return "(" + _joined(WORDS) + ")"


    def listed():
        return 1


    PATTERN = _pattern()
    REGISTRY = {"listed": listed}


    def uses():
        return PATTERN
''')


def test_a_builder_run_at_import_is_mutated_and_what_it_built_is_built_again(tmp_path, monkeypatch):
    """A function that the top-level code calls (directly or through another) rebuilds its constant
    when mutated; a function only referenced at top level (a registry entry) is not run at import."""
    from bench.mutants import import_time_functions

    (tmp_path / "builderpkg").mkdir()
    (tmp_path / "builderpkg" / "__init__.py").write_text("")
    (tmp_path / "builderpkg" / "mod.py").write_text(BUILDER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("builderpkg.mod")
    try:
        assert import_time_functions("builderpkg/mod.py", tmp_path) == {"_pattern", "_joined"}
        assert module.uses() == "(a|b)"
        mutant = next(m for m in list_mutants("builderpkg/mod.py", tmp_path) if m.change == "'|' -> 'XX|XX'")
        assert mutant.unit == "_joined"
        apply_mutant(mutant, tmp_path)
        assert module.uses() == "(aXX|XXb)"
    finally:
        for name in ("builderpkg.mod", "builderpkg"):
            sys.modules.pop(name, None)


DEFAULTS_SOURCE = textwrap.dedent('''
    from functools import lru_cache

    LIMIT = 20


    def listed(n, limit=LIMIT, *, most=LIMIT):
        return min(n, limit, most)


    class Report:
        def first(self, n, limit=LIMIT):
            return min(n, limit)


    @lru_cache(maxsize=None)
    def doubled(n):
        return n * 2
''')


@pytest.fixture
def defaults_module(tmp_path, monkeypatch):
    (tmp_path / "defaultspkg").mkdir()
    (tmp_path / "defaultspkg" / "__init__.py").write_text("")
    (tmp_path / "defaultspkg" / "mod.py").write_text(DEFAULTS_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("defaultspkg.mod")
    yield module, tmp_path
    for name in ("defaultspkg.mod", "defaultspkg"):
        sys.modules.pop(name, None)


def test_a_mutated_constant_reaches_the_defaults_written_as_its_name(defaults_module):
    """``limit=LIMIT`` was evaluated at definition: an edited file would define it with the new value."""
    module, root = defaults_module
    assert module.listed(99) == module.Report().first(99) == 20
    mutant = next(m for m in list_mutants("defaultspkg/mod.py", root) if m.change == "20 -> 21")
    apply_mutant(mutant, root)
    assert module.listed(99) == module.Report().first(99) == 21
    assert module.listed(99, 5) == 5


def test_a_cached_function_serves_no_result_of_the_unmutated_code(defaults_module):
    from bench.mutants import cached_functions

    module, root = defaults_module
    assert cached_functions(["defaultspkg/mod.py"]) == [module.doubled]
    assert module.doubled(3) == 6  # cached
    mutant = next(m for m in list_mutants("defaultspkg/mod.py", root) if m.change == "'*' -> '/'")
    apply_mutant(mutant, root)
    assert module.doubled(3) == 1.5
