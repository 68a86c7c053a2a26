"""What a person sees: rich output for stages, progress and summaries. Used only by the CLI."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"ran": "green", "up to date": "cyan", "adopted": "cyan", "failed": "red"}


class StageDisplay:
    """Prints one line as each stage starts (with why it runs), is skipped or finishes, and a summary
    table at the end whose last column says why each stage ran: the file that changed, ``--force``,
    new settings, or that it had not run yet."""

    def __init__(self, console: Console):
        self.console = console
        self.started: dict[str, float] = {}
        self.rows: list[tuple[str, str, str, str]] = []

    def __call__(self, stage: str, event: str, reason: str = "") -> None:
        if event == "start":  # one line, no rule: a log file reads the same as the terminal
            self.started[stage] = time.perf_counter()
            because = f" because {reason}" if reason else ""
            self.console.print(f"[bold]▶ {stage}[/]: runs{escape(because)}", highlight=False)
        elif event == "skip":
            self.console.print(f"[cyan]✓ {stage}[/]: up to date (use --force {stage} to rerun)")
            self.rows.append((stage, "up to date", "-", ""))
        elif event == "adopted":
            self.console.print(f"[cyan]✓ {stage}[/]: up to date (recorded by an older stage1; its files are hashed now)")
            self.rows.append((stage, "adopted", "-", "recorded without file hashes: hashed now"))
        elif event == "done":
            seconds = time.perf_counter() - self.started.get(stage, time.perf_counter())
            self.console.print(f"[green]✓ {stage}[/] finished in {seconds:.1f} s")
            self.rows.append((stage, "ran", f"{seconds:.1f}", reason))

    def summary(self) -> Table:
        table = Table(title="stages")
        table.add_column("stage", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("seconds", justify="right", no_wrap=True)
        table.add_column("why it ran", overflow="fold")  # wraps at 80 columns; never cut to "…"
        for stage, status, seconds, reason in self.rows:
            table.add_row(stage, f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]", seconds, Text(reason))
        return table


class _StageLines(logging.Filter):
    """Drops the pipeline's "stage X: running / done" records from the terminal, where StageDisplay
    already says the same in one line each; the log file keeps them."""

    MESSAGES = frozenset({"stage %s: running (%s)", "stage %s: done in %.1f s",
                          "stage %s: up to date (recorded by an older stage1; its files are hashed now)"})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.MESSAGES


_SHOWN_BY_STAGE_DISPLAY = _StageLines()


def setup_logging(console: Console, log_file: Path | None, debug: bool = False) -> None:
    """Log to the terminal through rich and, when given, to a file in the run directory."""
    root = logging.getLogger("stage1")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    # INFO reaches the terminal: stage1 logs stage decisions, trainer metrics and training samples there.
    terminal = RichHandler(console=console, show_path=False, markup=False, level=logging.DEBUG if debug else logging.INFO,
                           log_time_format="%H:%M:%S")
    terminal.addFilter(_SHOWN_BY_STAGE_DISPLAY)
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
    table.add_column("what", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    for key, value in counts.items():
        table.add_row(str(key), str(value))
    return table


class _DropOptionalKernelNotice(logging.Filter):
    """Drops bitsandbytes' import-time notice that its optional CPU 4-bit kernel is not installed.

    On a CPU with AVX512-BF16, importing bitsandbytes (0.48+) tries the ``kernels`` package and, when
    it is missing, warns "Failed to load CPU gemm_4bit_forward from kernels-community ... pip install
    kernels" through the logger ``bitsandbytes.backends.cpu.ops``. Nothing stage1 runs needs that
    kernel (4-bit falls back to its own path), yet with no logging set up the warning reaches stderr
    on every command and makes a one-line error two lines. Only this message is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


BITSANDBYTES_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
KERNELS_LOGGER = "kernels"
_OPTIONAL_KERNEL_NOTICE = _DropOptionalKernelNotice()


def quiet_import_notices() -> None:
    """Silence notices libraries print while being imported; cheap (imports nothing), so the CLI
    calls it before every command. Warnings and errors other than these still show."""
    logger = logging.getLogger(BITSANDBYTES_CPU_LOGGER)
    if _OPTIONAL_KERNEL_NOTICE not in logger.filters:
        logger.addFilter(_OPTIONAL_KERNEL_NOTICE)
    # `kernels` (pulled in by transformers) warns "Skipping publisher trust check ..." whenever the
    # Hub is offline (HF_HUB_OFFLINE=1, as scripts/env.sh and air-gapped users set it) and
    # bitsandbytes asks it for an optional CPU kernel: a notice about a download we never make.
    logging.getLogger(KERNELS_LOGGER).setLevel(logging.ERROR)


def quiet_libraries() -> None:
    """Keep the terminal for stage1's own output: library progress bars, deprecation chatter and
    bitsandbytes' optional-kernel notice go away (errors still show). Called by the CLI only."""
    import warnings

    quiet_import_notices()

    # TRL's "Computing reference log probs" is a tqdm bar written raw into the output (a new line per
    # refresh in a log file) that only TQDM_DISABLE turns off (TRL reads it at each call); tqdm takes
    # it as every bar's default in the processes started from here. datasets' map bars: below.
    os.environ["TQDM_DISABLE"] = "1"
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*")
    for name in ("bitsandbytes", "transformers", "datasets", "accelerate", "peft", "trl", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from datasets.utils.logging import disable_progress_bar as disable_datasets_bars
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_datasets_bars()


METRIC_KEYS = ("loss", "learning_rate", "grad_norm", "rewards/accuracies", "rewards/margins")


def _training_progress(console: Console):
    """The bar a training run shows: steps done of the total, steps per second, elapsed and remaining."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    )


def metrics_line(step: int, max_steps: int, metrics: dict[str, float]) -> str:
    """``"step 10/40  loss 2.31  learning_rate 0.0001"``: the latest ``METRIC_KEYS`` logged, in that
    order, as a line of its own (a live table would run into the log lines around it)."""
    shown = "  ".join(f"{key} {metrics[key]:.4g}" for key in METRIC_KEYS if key in metrics)
    return f"step {step}/{max_steps}  {shown}".rstrip()


def rich_training_callback(console: Console):
    """A TrainerCallback: a progress bar (rate, ETA) that disappears when training ends, each logged
    set of metrics as a line of its own, and one closing line with the steps and their rate.

    The class is made here so that transformers is imported only when training starts.
    """
    from rich.live import Live
    from transformers import TrainerCallback

    class RichTraining(TrainerCallback):
        def __init__(self):
            self.progress = _training_progress(console)
            self.live: Live | None = None
            self.task = None
            self.started = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            self.started = time.perf_counter()
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, rate="")
            self.live = Live(self.progress, console=console, refresh_per_second=4, transient=True)
            self.live.start()

        def on_step_end(self, args, state, control, **kwargs):
            if self.live is None:
                return
            seconds = max(time.perf_counter() - self.started, 1e-9)
            self.progress.update(self.task, completed=state.global_step, rate=f"{state.global_step / seconds:.2f} steps/s")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.live is None or not logs:
                return
            metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and k in METRIC_KEYS}
            if metrics:
                console.print(metrics_line(state.global_step, state.max_steps, metrics), markup=False, highlight=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.live is None:
                return
            self.live.stop()
            self.live = None
            seconds = time.perf_counter() - self.started
            console.print(f"training: {state.global_step}/{state.max_steps} steps in {seconds:.1f} s "
                          f"({state.global_step / max(seconds, 1e-9):.2f} steps/s)", markup=False, highlight=False)

    return RichTraining()


class RichProgressListener:
    """Draws ``stage1.core.progress`` reports as rich progress bars (rate and ETA), one per running task.

    When another live display is already on screen (the training table, whose sample generations
    also report progress), the report is skipped rather than fighting for the terminal.
    """

    def __init__(self, console: Console):
        self.console = console
        self.progress = None
        self.tasks: dict[str, tuple[int, int]] = {}  # name -> (rich task id, total)

    def __call__(self, task: str, advance: int, total: int) -> None:
        from rich.errors import LiveError
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self.progress is None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
            )
            try:
                self.progress.start()
            except LiveError:
                self.progress = None
                return
        if task not in self.tasks or self.tasks[task][1] != total:
            if task in self.tasks:
                self.progress.remove_task(self.tasks[task][0])
            self.tasks[task] = (self.progress.add_task(task, total=total), total)
        task_id = self.tasks[task][0]
        self.progress.advance(task_id, advance)
        if self.progress.tasks[self.progress.task_ids.index(task_id)].finished:
            self.progress.remove_task(task_id)
            del self.tasks[task]
        if not self.tasks:
            self.progress.stop()
            self.progress = None
