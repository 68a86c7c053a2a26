"""One row per measured figure, with its target; printed as a rich table and saved as JSON."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    benchmark: str
    metric: str
    value: float | None  # None: not measured here (``note`` says why)
    unit: str
    target: str = ""  # e.g. ">= 5", "< 300"; empty when the figure is reported without a target
    ok: bool | None = None  # None when there is no target, or when nothing was measured
    note: str = ""  # why there is no value (value None, e.g. "not measured (no GPU)"), or a remark on it

    def to_dict(self) -> dict:
        return asdict(self)


def check(value: float, target: str) -> bool | None:
    """Evaluate a target written as '<op> number' (ops: <, <=, >, >=)."""
    if not target:
        return None
    op, _, number = target.partition(" ")
    limit = float(number)
    return {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]


def row(benchmark: str, metric: str, value: float, unit: str, target: str = "", note: str = "") -> Row:
    return Row(benchmark, metric, round(float(value), 4), unit, target, check(value, target), note)


def unmeasured(benchmark: str, metric: str, unit: str, note: str, target: str = "") -> Row:
    """A row for a figure that could not be measured here, saying why."""
    return Row(benchmark, metric, None, unit, target, None, note)


def print_table(rows: list[Row], title: str = "stage1 benchmarks") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title} ({platform.machine()}, {platform.python_version()})")
    notes = any(item.note and item.value is not None for item in rows)
    for column in ("benchmark", "metric", "value", "unit", "target", "ok", *(("note",) if notes else ())):
        table.add_column(column, justify="right" if column == "value" else "left")
    for item in rows:
        verdict = "" if item.ok is None else ("[green]yes[/]" if item.ok else "[red]no[/]")
        value = (item.note or "—") if item.value is None else f"{item.value:g}"
        extra = (item.note if item.value is not None else "",) if notes else ()
        table.add_row(item.benchmark, item.metric, value, item.unit, item.target, verdict, *extra)
    Console().print(table)


def write_json(rows: list[Row], path: Path) -> None:
    from stage1.io.atomic import atomic_write_json

    atomic_write_json(path, {"machine": platform.machine(), "rows": [r.to_dict() for r in rows]})


def load_json(path: Path) -> list[Row]:
    return [Row(**r) for r in json.loads(Path(path).read_text())["rows"]]
