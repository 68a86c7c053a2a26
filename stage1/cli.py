"""stage1 command line: one subcommand per stage, and ``run`` for all of them.

This file is the only place that parses flags, prints and chooses exit codes (0 success, 1 a
regression or failed gate, 2 bad input or configuration). Heavy imports (torch, transformers, trl)
happen inside commands, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

# The flags and the table of stages: light to import (no torch), so `--help` stays instant.
from stage1.cli_files import cmd_check_leakage, cmd_score
from stage1.cli_golden import after_evaluate, check_golden_flags
from stage1.cli_parser import build_parser as build_command_line
from stage1.cli_parser import console as _console
from stage1.cli_parser import named_inputs
from stage1.cli_tools import cmd_inspect, cmd_plan
from stage1.core.env_numbers import check_environment, env_int
from stage1.core.errors import ConfigError
from stage1.stages import STAGE_COMMANDS, STAGES_BY_NAME
from stage1.stages.config import load_config

MULTI_PROCESS_COMMANDS = ("train-sft", "train-dpo")  # the only commands that use several processes
# OS errors that mean "this output cannot be written here", reported in one line (exit 2): a full
# disk or quota, a read-only file system, and permissions (EPERM comes from `chattr +i` and some
# network or container file systems, where plain permissions give EACCES).
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)



def _config(args: argparse.Namespace, check_training: bool = True):
    return load_config(args.config, args.set, check_training=check_training)


def _prepare_run(args: argparse.Namespace, console):
    """Config, the run directory and log file's places, then every input file read; nothing is
    created here (the run directory, its lock, config.yaml and the log come once the pipeline holds
    the lock, after its own checks). Returns the config, the run directory and the log file."""
    from stage1.console import quiet_libraries, setup_logging
    from stage1.io.run_dir import check_log_file
    from stage1.pipeline import check_run_dir, preflight

    quiet_libraries()
    config = _config(args)
    run_dir = Path(args.run_dir)
    check_run_dir(run_dir)
    log_file = check_log_file(run_dir, config.run.log_file)
    preflight(config)
    setup_logging(console, None, args.debug)  # the terminal now; the file once the run is locked
    return config, run_dir, log_file


def check_process_count(command: str, environ: dict[str, str]) -> None:
    """Refuse a non-training command launched as several processes (``accelerate launch``, torchrun).

    Every process would run the whole command: data stages and evaluation repeated on every rank,
    each one rewriting the same files. Only the training stages share work across processes.

    Raises:
        ConfigError: a numeric variable (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
            ``CUDA_VISIBLE_DEVICES``, ``STAGE1_*``) is not ASCII decimal, or ``WORLD_SIZE`` is above 1
            and ``command`` is not a training command.
    """

    check_environment(environ)  # ASCII decimal only: int("²") raises though "²".isdigit() is True
    processes = env_int(environ, "WORLD_SIZE", 1)
    if processes > 1 and command not in MULTI_PROCESS_COMMANDS:
        raise ConfigError(
            f"`{command}` was launched as {processes} processes; only {' and '.join(MULTI_PROCESS_COMMANDS)} "
            f"run under accelerate launch / torchrun",
            field="WORLD_SIZE",
            hint=f"run `stage1 {command} ...` as one process, and launch only the training commands with accelerate",
        )


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from stage1.console import RichProgressListener, StageDisplay, rich_training_callback, setup_logging
    from stage1.core import progress
    from stage1.pipeline import run_pipeline

    console = _console()
    config, run_dir, log_file = _prepare_run(args, console)
    display = StageDisplay(console)
    only = tuple(args.only) if getattr(args, "only", None) else None
    callbacks = (rich_training_callback(console),)
    with progress.listening(RichProgressListener(console)):
        run_pipeline(
            config, run_dir, only=only, force=tuple(args.force or ()), on_stage=display, callbacks=callbacks,
            verify=args.verify, on_locked=lambda: setup_logging(console, log_file, args.debug), keep_settings=not args.force,
        )
    console.print(display.summary())
    _print_evaluation(console, run_dir)
    return 0


def _print_evaluation(console, run_dir: Path) -> None:
    from stage1.io.layout import RunLayout

    layout = RunLayout(run_dir)
    if not layout.results.exists():
        return
    from stage1.eval.report import RichSummary, load_results

    console.print(RichSummary(load_results(layout.results)))
    console.print(f"report: [bold]{layout.report}[/]  chart: [bold]{layout.chart}[/]")


def cmd_stage(args: argparse.Namespace) -> int:
    """A single stage: inside a run directory (upstream must be done), or alone on explicit files."""
    if getattr(args, "variants", None) is not None:
        names = [name.strip() for name in args.variants.split(",") if name.strip()]
        if not names:
            raise ConfigError(f"--variants {args.variants!r} names no variant", field="--variants",
                              hint="give comma-separated names from base_raw,base,sft,dpo,dpo_only (and the DPO arms dpo_rules,dpo_policy), or leave --variants out for all")
        args.set.append(f"eval.variants=[{', '.join(names)}]")
    if getattr(args, "dry_run", False):
        return _evaluate_dry_run(args)
    check_golden_flags(args)  # before evaluating: a bad golden file would waste the whole run
    if args.inputs or args.out:
        return _stage_on_files(args)
    from stage1.io.layout import RunLayout

    stage = STAGE_COMMANDS[args.command]
    args.only = [stage, *STAGES_BY_NAME[stage].also]
    status = cmd_run(args)
    if args.command == "evaluate":
        return after_evaluate(args, RunLayout(args.run_dir).results, status)
    return status


def _evaluate_dry_run(args: argparse.Namespace) -> int:
    """Load each variant once and report its memory; generates nothing and marks nothing done."""
    from rich.table import Table

    from stage1.eval.settings import settings_for_run, variants_in_run
    from stage1.eval.stage import run_evaluate
    from stage1.io.layout import RunLayout

    console = _console()
    config = _config(args)
    training = config.training
    layout = RunLayout(Path(dict(named_inputs(args)).get("run", args.run_dir)), config.model.path)
    out_dir = Path(args.out) if args.out else layout.stage_dir("eval")
    with _lock_of_run_holding(out_dir):
        report = run_evaluate(
            settings_for_run(config.eval, training.dpo_arms),
            variants=variants_in_run(layout, training.quantization, training.sft_handoff, training.dpo_arms),
            items_path=Path(config.data.eval_items), out_dir=out_dir, dry_run=True,
        )
    table = Table("variant", "RSS loaded (MiB)", "RSS after free (MiB)", "GPU after (MiB)", "children left", "seconds",
                  title="evaluation dry run (one model at a time, nothing generated)")
    for name, value in report.get("variants", {}).items():
        memory = value.get("memory", {})
        released = memory.get("released", {})
        table.add_row(
            name, str(memory.get("after_load", {}).get("rss_mib")), str(memory.get("after_free", {}).get("rss_mib")),
            str(released.get("gpu_used_mib")), str(released.get("child_processes_left")), str(value.get("seconds")),
        )
    for name, reason in report.get("skipped_variants", {}).items():
        table.add_row(name, f"skipped: {reason}", "", "", "", "")
    console.print(table)
    return 0


def _lock_of_run_holding(out_dir: Path):
    """The lock of the run directory ``out_dir`` lies in (a no-op outside any run): every writer
    of a run directory holds it."""
    from stage1.io.run_lock import lock_for_output
    from stage1.pipeline import check_run_dir

    check_run_dir(out_dir, field="--out")
    return lock_for_output(out_dir)


#: Stages that train nothing: on files their config skips the lora/sft/dpo checks (PEFT and TRL import torch).
DATA_STAGES = ("negatives", "pairs")


def _stage_on_files(args: argparse.Namespace) -> int:
    from stage1.io.layout import RESULTS_FILE
    from stage1.pipeline import check_stage_on_files, run_stage_on_files

    stage = STAGE_COMMANDS[args.command]
    if not args.out:
        raise ConfigError("--out is required with --in", field="--out")
    inputs = named_inputs(args)
    check_stage_on_files(stage, inputs, Path(args.out))
    from stage1.console import quiet_libraries

    console = _console()
    quiet_libraries()
    result = run_stage_on_files(stage, _config(args, check_training=stage not in DATA_STAGES), inputs, Path(args.out))
    console.print(f"[green]✓ {args.command}[/] wrote {args.out}")
    if isinstance(result, dict) and isinstance(result.get("counts"), dict):
        from stage1.console import counts_table

        console.print(counts_table(args.command, result["counts"]))
    if args.command == "evaluate":
        return after_evaluate(args, Path(args.out) / RESULTS_FILE, 0)
    return 0


def cmd_build_tiny(args: argparse.Namespace) -> int:
    from stage1.io.hashing import sha256_file
    from stage1.io.temps import remove_stale_siblings
    from stage1.organism.spec import build_tiny

    with _lock_of_run_holding(args.out):
        remove_stale_siblings(args.out)  # what a killed build-tiny left beside its folder
        out = build_tiny(args.out, args.kind, args.seed, log=lambda message: _console().print(message))
    digest = sha256_file(out / "model.safetensors")[:16]
    name = "the model organism" if args.kind == "organism" else "tiny Qwen2"
    _console().print(f"{name} written to [bold]{out}[/] (weights sha256 {digest}…)")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    handlers = {"run": cmd_run, "stage": cmd_stage, "score": cmd_score, "check-leakage": cmd_check_leakage,
                "plan": cmd_plan, "build-tiny": cmd_build_tiny, "inspect": cmd_inspect}
    return build_command_line(handlers, __doc__.splitlines()[0])


def _unreadable(path: Path) -> bool:
    """An existing file or folder this process may not read: an OSError about it is a read failure."""
    try:
        return path.exists() and not os.access(path, os.R_OK)
    except OSError:
        return False


def _free_space(error: OSError) -> str:
    """The space left where a write failed for want of it (a full disk or quota), as " (N MiB free there)"."""
    if error.errno not in (errno.ENOSPC, errno.EDQUOT) or not error.filename:
        return ""
    from stage1.io.folders import free_bytes

    free = free_bytes(Path(error.filename))
    return "" if free is None else f" ({free / 2**20:,.1f} MiB free there)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from stage1.console import quiet_import_notices
    from stage1.core.errors import EXIT_INPUT, Stage1Error
    from stage1.core.format import FormatError
    from stage1.core.masking import MaskingError

    quiet_import_notices()
    try:
        check_process_count(args.command, dict(os.environ))
        return args.handler(args)
    except (Stage1Error, FormatError, MaskingError) as error:  # the core's errors are ValueErrors, not Stage1Errors
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_INPUT)
    except OSError as error:
        if args.debug or error.errno not in WRITE_ERRNOS:
            raise
        where = f" {error.filename}" if error.filename else ""
        if error.filename and _unreadable(Path(error.filename)):
            print(f"error: cannot read{where}: {error.strerror}; check its permissions", file=sys.stderr)
            return EXIT_INPUT
        print(f"error: cannot write{where}: {error.strerror}{_free_space(error)}; earlier outputs are intact "
              "(writes are atomic), free space or choose a writable --run-dir and rerun", file=sys.stderr)
        return EXIT_INPUT
    except Exception as error:  # a library's wrapper of ENOSPC (safetensors' SafetensorError is no OSError)
        from stage1.io.folders import is_disk_full

        if args.debug or not is_disk_full(error):
            raise
        print(f"error: no space left on the device: {error}; earlier outputs are intact (writes are atomic), "
              "free space or choose another --run-dir and rerun", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept and the next run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
