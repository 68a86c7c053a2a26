"""``--against`` and ``--save-golden``: a golden result checked before ``evaluate`` or ``score`` runs,
saved or compared once it has (exit 1 on a regression only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stage1.cli_parser import console as _console
from stage1.core.errors import ConfigError


def check_golden_flags(args: argparse.Namespace) -> None:
    """Refuse ``--against`` flags ``compare_golden`` could not use, before any evaluation runs."""
    if getattr(args, "against", None):
        golden_tolerance(args)
        check_golden(Path(args.against))  # a bad golden file would waste the whole run


def after_evaluate(args: argparse.Namespace, results: Path, status: int) -> int:
    """Optionally save the run as a golden result, then compare against one (exit 1 on a regression)."""
    if args.save_golden:
        from stage1.eval.golden import save_golden

        _console().print(f"golden result written to [bold]{save_golden(results, Path(args.save_golden))}[/]")
    if args.against:
        return compare_golden(results, Path(args.against), args)
    return status


def check_golden(golden_path: Path) -> None:
    """Refuse a golden file ``compare_golden`` could not use.

    Raises:
        InputError: the file is missing, not a results JSON, or holds no evaluated item.
    """
    from stage1.eval.golden import load_golden

    save = "save one from a good evaluation with `stage1 evaluate --save-golden GOLDEN.json`"
    load_golden(golden_path, missing_hint=f"check the --against path, or {save}", save_hint=save)


def golden_tolerance(args: argparse.Namespace):
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


def compare_golden(results_path: Path, golden_path: Path, args: argparse.Namespace) -> int:
    """Print every significant change against the golden result; exit 1 on a regression only."""
    from stage1.eval.golden_changes import check_files

    console = _console()
    regressions, changes = check_files(results_path, golden_path, golden_tolerance(args))
    for change in changes:
        console.print(f"[yellow]change[/]: {change}")
    if not regressions:
        console.print(f"[green]no significant regression against {golden_path}[/] ({len(changes)} other significant change(s))")
        return 0
    for regression in regressions:
        console.print(f"[red]regression[/]: {regression}")
    return 1
