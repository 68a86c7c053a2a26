"""The commands on files made anywhere, outside any run: ``score`` (responses scored with the
evaluation's criteria) and ``check-leakage`` (the leakage gate on training files). Neither loads a
model, so neither imports torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from stage1.cli_golden import check_golden_flags, compare_golden
from stage1.cli_parser import console as _console
from stage1.cli_parser import inputs_by_name
from stage1.stages.config import load_config


def cmd_score(args: argparse.Namespace) -> int:
    """Score responses generated anywhere with the evaluation's criteria and statistics."""
    from stage1.eval.report import RichSummary
    from stage1.eval.score import run_score

    inputs = inputs_by_name(args, {"items": False, "responses": False})
    check_golden_flags(args)  # before scoring: a bad golden file is an input error
    config = load_config(args.config, args.set, check_training=False)  # no torch: scoring trains nothing
    out = Path(args.out)
    results = run_score(config.section("eval"), items_path=inputs["items"][0], responses_path=inputs["responses"][0], out_dir=out)
    console = _console()
    console.print(RichSummary(results))
    console.print(f"report: [bold]{out / 'report.md'}[/]  chart: [bold]{out / 'chart.png'}[/]")
    if args.against:
        return compare_golden(out / "results.json", Path(args.against), args)
    return 0


def cmd_check_leakage(args: argparse.Namespace) -> int:
    """The leakage gate on any training files; exit 1 listing the offenders when it finds any."""
    from stage1.io.records import check_training_files

    inputs = inputs_by_name(args, {"train": True, "eval_items": False})
    settings = load_config(args.config, args.set, check_training=False).section("pairs").leakage
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
