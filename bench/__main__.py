"""Every benchmark, one table: ``python -m bench``.

    python -m bench                                  # all of them (about 10 minutes on 2 CPU cores)
    python -m bench --only generation,data           # a subset
    python -m bench --out /tmp/bench.json            # where the JSON goes (default bench/results/latest.json)

Runs ``bench.<name>.run()`` for each benchmark in turn, with its own printing sent to
``bench/results/<name>.log``, and prints one rich table of every figure with its target beside it.
Each benchmark also gets its wall time and its CPU time (this process and the children it waited
for): on a machine shared with other jobs, wall time measures the other jobs too, so the load
average at start and end is recorded with the table. A benchmark that crashes is reported as a row
and the rest still run. The exit status is 0 whatever the figures: this reports, it does not gate.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.table import Row, print_table, row, unmeasured

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_OUT = RESULTS_DIR / "latest.json"
BENCHMARKS = ("organism", "generation", "samples", "data", "commands", "training", "evaluation", "pipeline", "memplan")


def as_rows(name: str, result: Any) -> list[Row]:
    """A benchmark's result as table rows: a list of rows, or a dict carrying them under ``rows``.

    Raises:
        TypeError: a result with no rows in it.
    """
    if isinstance(result, list) and all(isinstance(item, Row) for item in result):
        return list(result)
    if isinstance(result, dict) and isinstance(result.get("rows"), list):
        return [item if isinstance(item, Row) else Row(**item) for item in result["rows"]]
    raise TypeError(f"bench.{name}.run() returned {type(result).__name__} without table rows")


def parse_only(text: str | None) -> tuple[str, ...]:
    """``"generation,data"`` → the names, in the order given.

    Raises:
        SystemExit: an unknown benchmark name (argparse-style message).
    """
    if not text:
        return BENCHMARKS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise SystemExit(f"python -m bench: error: unknown benchmark(s) {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(BENCHMARKS)}")
    return names


@contextlib.contextmanager
def output_to(path: Path):
    """Send everything written to stdout and stderr (this process's and its children's) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)  # subprocesses and C libraries write to the descriptors
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # Python code to sys.stdout
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_one(name: str, log_dir: Path) -> list[Row]:
    """One benchmark's rows plus its wall and CPU time; a crash becomes a row naming the log."""
    started, started_cpu = time.perf_counter(), cpu_seconds()
    log = log_dir / f"{name}.log"
    try:
        with output_to(log):
            result = importlib.import_module(f"bench.{name}").run()
        rows = as_rows(name, result)
    except Exception as error:  # noqa: BLE001 - one broken benchmark must not hide the others
        with open(log, "a", encoding="utf-8") as handle:
            traceback.print_exc(file=handle)
        rows = [unmeasured(name, "run", "", f"failed: {type(error).__name__}: {error} (see {log})")]
    wall, cpu = time.perf_counter() - started, cpu_seconds() - started_cpu
    return [*rows, row(name, "benchmark wall time", wall, "s"), row(name, "benchmark CPU time (self + children)", cpu, "s")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, metavar="NAME[,NAME]", help=f"a subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file for the table (default: %(default)s)")
    args = parser.parse_args(argv)
    names = parse_only(args.only)
    load_start = os.getloadavg()
    rows: list[Row] = []
    for name in names:
        print(f"bench.{name} ...", file=sys.stderr, flush=True)
        rows += run_one(name, RESULTS_DIR)
    load_end = os.getloadavg()
    title = (f"stage1 benchmarks on {os.cpu_count()} CPU cores; load average {load_start[0]:.1f} at start, "
             f"{load_end[0]:.1f} at end")
    print_table(rows, title)
    write_results(args.out, rows, names, load_start, load_end)
    print(f"written {args.out}", file=sys.stderr)
    return 0


def write_results(path: Path, rows: list[Row], names: tuple[str, ...], load_start, load_end) -> None:
    """The table as JSON (readable by ``bench.table.load_json``) with the machine and its load."""
    from stage1.io.atomic import atomic_write_json

    atomic_write_json(path, {
        "command": "python -m bench" + ("" if names == BENCHMARKS else f" --only {','.join(names)}"),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_start": list(load_start),
        "load_average_end": list(load_end),
        "rows": [item.to_dict() for item in rows],
    })


if __name__ == "__main__":
    sys.exit(main())
