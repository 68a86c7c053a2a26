"""Mutation score of the pure core: ``python -m bench.mutation`` (or ``tox -e mutation``).

    python -m bench.mutation                                     # every module in MODULES (12 min, 2 cores)
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
runs only the tests that reach it, fastest first, and stops at the first failure. A function the
module's top-level code runs at import (``refusals._alternatives``, which builds the compiled
patterns) is swapped and then that top-level code is run again, against every test of the module.
Session fixtures are built once per run and inherited by every child.

What it does not mutate: docstrings, annotations, decorators, imports, f-strings, and statements of
a class body other than its methods (a dataclass field default is baked into the generated
``__init__`` and cannot be swapped in place). One worker: mutants run one after another.
This reports, it does not gate: the exit status is 0 whatever the score (2 when the baseline fails).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.mutants import (
    ImportFails,
    Mutant,
    apply_mutant,
    cached_functions,
    import_time_functions,
    list_mutants,
    unit_lines,
    units_at,
)

ROOT = Path(__file__).resolve().parent.parent

# Each pure module, by path from the repository root, and the unit tests that are its own. The
# runner reads paths from this table only: when a module or a test file moves, change it here.
MODULES: dict[str, tuple[str, ...]] = {
    "stage1/core/stats.py": ("tests/unit/core/test_stats.py",),
    "stage1/core/format.py": ("tests/unit/core/test_format.py",),
    "stage1/core/masking.py": ("tests/unit/core/test_masking.py",),
    "stage1/core/text_keys.py": ("tests/unit/core/test_text_keys.py",),
    "stage1/core/splits.py": ("tests/unit/sft_data/test_sft_data.py", "tests/unit/pairs/test_pairs.py"),
    # The adversarial golden file is criteria's own test too: every verdict in it is one of their rules.
    "stage1/core/criteria.py": (
        "tests/unit/core/test_criteria.py", "tests/unit/core/test_criteria_vocabulary.py",
        "tests/unit/core/test_adversarial_golden.py",
    ),
    **dict.fromkeys(("stage1/core/criteria_text.py", "stage1/core/criteria_form.py", "stage1/core/criteria_content.py"), (
        "tests/unit/core/test_criteria.py", "tests/unit/core/test_criteria_vocabulary.py",
        "tests/unit/core/test_criteria_reading.py", "tests/unit/core/test_adversarial_golden.py",
    )),
    "stage1/core/length_control.py": ("tests/unit/core/test_length_control.py",),
    "stage1/core/seed_stats.py": ("tests/unit/core/test_seed_stats.py",),
    "stage1/core/refusals.py": (
        "tests/unit/core/test_refusals.py", "tests/unit/core/test_criteria.py", "tests/unit/core/test_adversarial_golden.py",
    ),
    "stage1/core/leakage.py": ("tests/unit/core/test_leakage.py",),
    "stage1/core/records.py": ("tests/unit/core/test_records.py",),
    "stage1/core/eval_items.py": ("tests/unit/core/test_eval_items.py",),
    "stage1/core/reward_metrics.py": ("tests/unit/core/test_reward_metrics.py",),
    "stage1/core/lengths.py": ("tests/unit/core/test_lengths.py",),
    "stage1/core/seeds.py": ("tests/unit/core/test_seeds.py",),
    "stage1/core/progress.py": ("tests/unit/core/test_progress.py",),
    "stage1/core/errors.py": ("tests/unit/core/test_errors.py",),
    "stage1/negatives/mix.py": ("tests/unit/negatives/test_negatives.py",),
    "stage1/negatives/repeats.py": ("tests/unit/negatives/test_negatives.py",),
}


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | timeout | survived | no test | error
    tests_run: int = 0
    killed_by: str = ""


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
        cached = cached_functions(self.modules)
        for position, item in enumerate(items):
            nextitem = items[position + 1] if position + 1 < len(items) else keep
            reached.clear()
            for function in cached:  # a result cached by an earlier test would hide the call from the trace
                function.cache_clear()
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
        units = unit_lines(path, ROOT)
        filename = str(ROOT / path)
        reaching: dict[str, list] = {}
        for item in own_items:
            for file, first_line in baseline.reached[item.nodeid]:
                if file == filename:
                    for unit in units_at(units, first_line):
                        reaching.setdefault(unit, []).append(item)
        mutants = list_mutants(path, ROOT)
        # A function run at import (a builder of a constant) reaches every test that uses what it built.
        at_import = import_time_functions(path, ROOT)
        if self.lines:
            mutants = [m for m in mutants if self.lines[0] <= m.line <= self.lines[1]]
        print(f"{path}: {len(mutants)} mutants against {len(own_items)} tests", flush=True)
        started = time.perf_counter()
        for done, mutant in enumerate(mutants, start=1):
            if done % 50 == 0:
                mine = [o.status for o in self.outcomes if o.mutant.module == path]
                print(f"  {done}/{len(mutants)}: {sum(s in SCORED for s in mine)} killed, "
                      f"{len(mine) - sum(s in SCORED for s in mine)} not, {time.perf_counter() - started:.0f} s", flush=True)
            chosen = own_items if mutant.unit == "<module>" or mutant.unit in at_import else reaching.get(mutant.unit, [])
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
        apply_mutant(mutant, ROOT)
    except ImportFails as error:
        return {"status": "killed", "ran": 0, "killer": f"import fails: {error}"}
    for position, item in enumerate(chosen):
        nextitem = chosen[position + 1] if position + 1 < len(chosen) else keep
        if any(report.failed for report in runtestprotocol(item, log=False, nextitem=nextitem)):
            return {"status": "killed", "ran": position + 1, "killer": item.nodeid}
    return {"status": "survived", "ran": len(chosen), "killer": ""}


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
