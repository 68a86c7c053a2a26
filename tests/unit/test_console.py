"""What a person sees, in a terminal of 80 columns and in a log file: one line per stage event,
metrics on lines of their own, tables that wrap instead of cutting, no colour where none is wanted."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from stage1.console import METRIC_KEYS, StageDisplay, metrics_line, setup_logging


def _log_file_console(**kwargs) -> tuple[Console, io.StringIO]:
    """A console writing to a file, as output redirected to a log is (not a terminal)."""
    out = io.StringIO()
    return Console(file=out, width=80, **kwargs), out


def test_the_metrics_line_shows_only_known_metrics_in_the_order_of_metric_keys():
    shown = list(METRIC_KEYS[:2])
    line = metrics_line(10, 40, {shown[1]: 0.25, "not_a_metric": 9.0, shown[0]: 1.5})
    assert line == f"step 10/40  {shown[0]} 1.5  {shown[1]} 0.25"
    assert metrics_line(0, 40, {}) == "step 0/40"


def test_each_stage_event_is_one_plain_line_in_a_log_file():
    console, out = _log_file_console()
    display = StageDisplay(console)
    display("sft", "start", "not run yet (or interrupted) [a reason with brackets]")
    display("sft", "done", "not run yet")
    display("merge", "skip")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and not any("─" in line or "\x1b" in line for line in lines)
    assert lines[0] == "▶ sft: runs because not run yet (or interrupted) [a reason with brackets]"
    assert lines[1].startswith("✓ sft finished in ") and lines[2].startswith("✓ merge: up to date")


def test_the_stage_summary_wraps_a_long_reason_at_80_columns_instead_of_cutting_it():
    console, out = _log_file_console()
    display = StageDisplay(console)
    reason = "sft_data/train.jsonl changed since the last run (size and modification time differ from stage.json)"
    display("sft", "start", reason)
    display("sft", "done", reason)
    console.print(display.summary())
    table = out.getvalue().split("stages", 1)[1]
    assert "…" not in table and max(map(len, table.splitlines())) <= 80
    assert "modification" in table and "stage.json)" in table


def test_stage_lines_the_display_prints_are_not_logged_twice_on_the_terminal(tmp_path, monkeypatch):
    log = logging.getLogger("stage1")
    monkeypatch.setattr(log, "handlers", [])  # setup_logging replaces them: give the test its own list
    monkeypatch.setattr(log, "propagate", log.propagate)
    monkeypatch.setattr(log, "level", log.level)
    console, out = _log_file_console()
    log_file = tmp_path / "run.log"
    setup_logging(console, log_file)
    log.info("stage %s: running (%s)", "sft", "not run yet")
    log.info("stage %s: done in %.1f s", "sft", 1.25)
    log.info("sft: 40 optimizer steps (max_steps 40)")
    for handler in log.handlers:
        handler.flush()
    terminal = out.getvalue()
    assert "stage sft: running" not in terminal and "done in 1.2 s" not in terminal and "40 optimizer steps" in terminal
    for handler in list(log.handlers):
        handler.close()
    written = log_file.read_text()
    assert "stage sft: running (not run yet)" in written and "stage sft: done in 1.2 s" in written


def test_no_color_and_a_log_file_get_no_escape_codes(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    terminal.print("[green]✓ sft[/] finished")
    assert "\x1b[3" not in terminal.file.getvalue(), "NO_COLOR: no colour codes even on a terminal"
    monkeypatch.delenv("NO_COLOR")
    console, out = _log_file_console()
    console.print("[green]✓ sft[/] finished")
    assert out.getvalue() == "✓ sft finished\n"


def test_library_tqdm_bars_are_off_once_libraries_are_quieted(monkeypatch):
    """TRL's "Computing reference log probs" bar passes disable=bool(TQDM_DISABLE) itself, and
    datasets' map bars go through datasets' own switch: neither reaches the output."""
    import os

    from datasets.utils import enable_progress_bars
    from datasets.utils.tqdm import tqdm as datasets_tqdm

    from stage1.console import quiet_libraries

    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # restored after the test
    enable_progress_bars()
    shown = io.StringIO()
    list(datasets_tqdm(range(3), desc="before", file=shown))
    assert "before" in shown.getvalue(), "the check can see a bar"
    try:
        quiet_libraries()
        quiet = io.StringIO()
        list(datasets_tqdm(range(3), desc="Map", file=quiet))
        list(datasets_tqdm(range(3), desc="Computing reference log probs", file=quiet,
                           disable=bool(os.environ.get("TQDM_DISABLE", ""))))
        assert quiet.getvalue() == ""
    finally:
        enable_progress_bars()
