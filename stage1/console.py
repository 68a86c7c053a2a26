"""What a person sees: rich output for stages, progress and summaries. Used only by the CLI."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

STATUS_STYLE = {"ran": "green", "up to date": "cyan", "failed": "red"}


class StageDisplay:
    """Prints one line as each stage starts, is skipped or finishes, and a summary table at the end."""

    def __init__(self, console: Console):
        self.console = console
        self.started: dict[str, float] = {}
        self.rows: list[tuple[str, str, str]] = []

    def __call__(self, stage: str, event: str) -> None:
        if event == "start":
            self.started[stage] = time.perf_counter()
            self.console.rule(f"[bold]{stage}")
        elif event == "skip":
            self.console.print(f"[cyan]✓ {stage}[/]: up to date (use --force {stage} to rerun)")
            self.rows.append((stage, "up to date", "-"))
        elif event == "done":
            seconds = time.perf_counter() - self.started.get(stage, time.perf_counter())
            self.console.print(f"[green]✓ {stage}[/] finished in {seconds:.1f} s")
            self.rows.append((stage, "ran", f"{seconds:.1f}"))

    def summary(self) -> Table:
        table = Table(title="stages")
        table.add_column("stage")
        table.add_column("status")
        table.add_column("seconds", justify="right")
        for stage, status, seconds in self.rows:
            table.add_row(stage, f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]", seconds)
        return table


def setup_logging(console: Console, log_file: Path | None, debug: bool = False) -> None:
    """Log to the terminal through rich and, when given, to a file in the run directory."""
    root = logging.getLogger("stage1")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    terminal = RichHandler(console=console, show_path=False, markup=False, level=logging.WARNING if not debug else logging.DEBUG)
    root.addHandler(terminal)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        to_file.setLevel(logging.DEBUG)
        root.addHandler(to_file)
    root.propagate = False


def counts_table(title: str, counts: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in counts.items():
        table.add_row(str(key), str(value))
    return table
