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
from stage1.cli_parser import build_parser as build_command_line
from stage1.config.presets import input_path
from stage1.core.env_numbers import check_environment, env_int
from stage1.core.errors import ConfigError
from stage1.stages import STAGE_COMMANDS, STAGES_BY_NAME

MULTI_PROCESS_COMMANDS = ("train-sft", "train-dpo")  # the only commands that use several processes
# OS errors that mean "this output cannot be written here", reported in one line (exit 2): a full
# disk or quota, a read-only file system, and permissions (EPERM comes from `chattr +i` and some
# network or container file systems, where plain permissions give EACCES).
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _console():
    from rich.console import Console

    return Console()


def _config(args: argparse.Namespace, check_training: bool = True):
    from stage1.config.load import load_config

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
            from stage1.core.errors import ConfigError

            raise ConfigError(f"--variants {args.variants!r} names no variant", field="--variants",
                              hint="give comma-separated names from base_raw,base,sft,dpo,dpo_only (and the DPO arms dpo_rules,dpo_policy), or leave --variants out for all")
        args.set.append(f"eval.variants=[{', '.join(names)}]")
    if getattr(args, "dry_run", False):
        return _evaluate_dry_run(args)
    if getattr(args, "against", None):
        _golden_tolerance(args)
        _check_golden(Path(args.against))  # before evaluating: a bad golden file would waste the whole run
    if args.inputs or args.out:
        return _stage_on_files(args)
    from stage1.io.layout import RunLayout

    stage = STAGE_COMMANDS[args.command]
    args.only = [stage, *STAGES_BY_NAME[stage].also]
    status = cmd_run(args)
    if args.command == "evaluate":
        return _after_evaluate(args, RunLayout(args.run_dir).results, status)
    return status


def _after_evaluate(args: argparse.Namespace, results: Path, status: int) -> int:
    """Optionally save the run as a golden result, then compare against one (exit 1 on a regression)."""
    if args.save_golden:
        from stage1.eval.golden import save_golden

        _console().print(f"golden result written to [bold]{save_golden(results, Path(args.save_golden))}[/]")
    if args.against:
        return _compare_golden(results, Path(args.against), args)
    return status


def _check_golden(golden_path: Path) -> None:
    """Refuse a golden file ``_compare_golden`` could not use, before any evaluation runs.

    Raises:
        InputError: the file is missing, not a results JSON, or holds no evaluated item.
    """
    from stage1.eval.golden import load_golden

    save = "save one from a good evaluation with `stage1 evaluate --save-golden GOLDEN.json`"
    load_golden(golden_path, missing_hint=f"check the --against path, or {save}", save_hint=save)


def _evaluate_dry_run(args: argparse.Namespace) -> int:
    """Load each variant once and report its memory; generates nothing and marks nothing done."""
    from rich.table import Table

    from stage1.eval.settings import settings_for_run, variants_in_run
    from stage1.eval.stage import run_evaluate
    from stage1.io.layout import RunLayout

    console = _console()
    config = _config(args)
    training = config.training
    layout = RunLayout(Path(dict(_named_inputs(args)).get("run", args.run_dir)), config.model.path)
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


def _named_inputs(args: argparse.Namespace) -> dict[str, Path]:

    named: dict[str, Path] = {}
    for text in args.inputs or []:
        name, sep, path = text.partition("=")
        if not sep:
            raise ConfigError(f"--in {text!r} is not NAME=PATH", field="--in")
        if not path.strip():
            raise ConfigError(f"names no file (--in {text!r})", field=f"--in {name}", hint=f"give --in {name}=PATH")
        if name in named:
            raise ConfigError(
                f"--in {name}= is given twice ({named[name]} and {path})", field="--in", hint="give each input once"
            )
        named[name] = input_path(path)
    return named


#: Stages that train nothing: on files their config skips the lora/sft/dpo checks (PEFT and TRL import torch).
DATA_STAGES = ("negatives", "pairs")


def _stage_on_files(args: argparse.Namespace) -> int:
    from stage1.io.layout import RESULTS_FILE
    from stage1.pipeline import check_stage_on_files, run_stage_on_files

    stage = STAGE_COMMANDS[args.command]
    if not args.out:
        raise ConfigError("--out is required with --in", field="--out")
    inputs = _named_inputs(args)
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
        return _after_evaluate(args, Path(args.out) / RESULTS_FILE, 0)
    return 0


def _golden_tolerance(args: argparse.Namespace):
    """The drop rule of ``--against`` (``--golden-alpha``, ``--golden-min-drop``).

    Raises:
        ConfigError: a value out of range, naming the flag.
    """
    from stage1.eval.golden import GoldenTolerance

    alpha, min_drop = getattr(args, "golden_alpha", 0.01), getattr(args, "golden_min_drop", 0.05)
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"must be in (0, 1), got {alpha}", field="--golden-alpha")
    if not 0.0 <= min_drop < 1.0:
        raise ConfigError(f"must be a rate in [0, 1) (0.05 = 5 points), got {min_drop}", field="--golden-min-drop")
    return GoldenTolerance(alpha=alpha, min_drop=min_drop)


def _compare_golden(results_path: Path, golden_path: Path, args: argparse.Namespace) -> int:
    """Print every significant change against the golden result; exit 1 on a regression only."""
    from stage1.eval.golden_changes import check_files

    console = _console()
    regressions, changes = check_files(results_path, golden_path, _golden_tolerance(args))
    for change in changes:
        console.print(f"[yellow]change[/]: {change}")
    if not regressions:
        console.print(f"[green]no significant regression against {golden_path}[/] ({len(changes)} other significant change(s))")
        return 0
    for regression in regressions:
        console.print(f"[red]regression[/]: {regression}")
    return 1


def _inputs_named(args: argparse.Namespace, allowed: dict[str, bool]) -> dict[str, list[Path]]:
    """``--in NAME=PATH`` values by name; ``allowed`` maps each name to whether it may repeat.

    Raises:
        ConfigError: not NAME=PATH, an unknown name, a missing one, or a single one given twice.
    """

    named: dict[str, list[Path]] = {name: [] for name in allowed}
    for text in args.inputs or []:
        name, sep, path = text.partition("=")
        if not sep:
            raise ConfigError(f"--in {text!r} is not NAME=PATH", field="--in")
        if not path.strip():
            raise ConfigError(f"names no file (--in {text!r})", field=f"--in {name}", hint=f"give --in {name}=PATH")
        if name not in allowed:
            raise ConfigError(f"`{args.command}` reads no input named {name!r}", field="--in", hint=f"it takes: {', '.join(allowed)}")
        if named[name] and not allowed[name]:
            raise ConfigError(f"--in {name}= is given twice ({named[name][0]} and {path})", field="--in", hint="give it once")
        named[name].append(input_path(path))
    missing = [name for name, paths in named.items() if not paths]
    if missing:
        raise ConfigError(f"missing --in {'=, --in '.join(missing)}=", field="--in",
                          hint=" ".join(f"--in {name}=FILE" for name in allowed))
    return named


def cmd_score(args: argparse.Namespace) -> int:
    """Score responses generated anywhere with the evaluation's criteria and statistics."""
    from stage1.eval.report import RichSummary
    from stage1.eval.score import run_score

    inputs = _inputs_named(args, {"items": False, "responses": False})
    if args.against:
        _golden_tolerance(args)
        _check_golden(Path(args.against))  # before scoring: a bad golden file is an input error
    config = _config(args, check_training=False)  # no torch: scoring trains nothing
    out = Path(args.out)
    results = run_score(config.section("eval"), items_path=inputs["items"][0], responses_path=inputs["responses"][0], out_dir=out)
    console = _console()
    console.print(RichSummary(results))
    console.print(f"report: [bold]{out / 'report.md'}[/]  chart: [bold]{out / 'chart.png'}[/]")
    if args.against:
        return _compare_golden(out / "results.json", Path(args.against), args)
    return 0


def cmd_check_leakage(args: argparse.Namespace) -> int:
    """The leakage gate on any training files; exit 1 listing the offenders when it finds any."""
    from stage1.io.records import check_training_files

    inputs = _inputs_named(args, {"train": True, "eval_items": False})
    settings = _config(args, check_training=False).section("pairs").leakage
    leaks, rows = check_training_files(inputs["eval_items"][0], inputs["train"], settings)
    console = _console()
    for leak in leaks:
        console.print(f"[red]{leak.match}[/]: {leak.describe()}", soft_wrap=True, highlight=False)
    items, files = inputs["eval_items"][0], ", ".join(f"{name} ({count} rows)" for name, count in rows.items())
    if leaks:
        console.print(f"[red]{len(leaks)} leak(s)[/] of {items} into {files}", highlight=False)
        return 1
    console.print(f"[green]no leak[/] of {items} into {files} (exact, n-gram and paraphrase rules)", highlight=False)
    return 0


def cmd_build_tiny(args: argparse.Namespace) -> int:
    from stage1.hf.tiny import build_tiny_qwen
    from stage1.io.hashing import sha256_file
    from stage1.io.temps import remove_stale_siblings

    with _lock_of_run_holding(args.out):
        remove_stale_siblings(args.out)  # what a killed build-tiny left beside its folder
        out = build_tiny_qwen(args.out, seed=args.seed)
    digest = sha256_file(out / "model.safetensors")[:16]
    _console().print(f"tiny Qwen2 written to [bold]{out}[/] (weights sha256 {digest}…)")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from stage1.cli_tools import cmd_inspect, cmd_plan

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
