"""The two-sided half of the golden check: significant changes that do not fail it, reported.

``stage1.eval.golden.compare_to_golden`` fails a significant, large drop. A check that sees only
drops hides the rest: a gain (a bug can raise a rate: loss on the instruction tokens did), a
significant drop below ``min_drop``, and an effect between two variants that the golden result
shows and the new one does not (SFT -> DPO significantly better before, no different now). Each is
reported here as a ``Change``; ``check_files`` returns both lists, the CLI prints both and exits 1
on a regression only.

Comparison effects are each side's own paired McNemar at ``alpha``, uncorrected for multiplicity:
this is a report of what moved, not a test that corrects the study's families.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.core.stats import is_significant
from stage1.eval.golden import (
    GoldenTolerance,
    PairedCounts,
    Regression,
    compare_to_golden,
    golden_cells,
    has_evidence,
    large_enough,
    load_golden,
    paired_counts,
    paired_detail,
)
from stage1.eval.report import load_results
from stage1.eval.summary import verdicts_from_results

CHANGE_KINDS = ("gain", "small_drop", "effect_gone", "effect_new", "effect_reversed")


@dataclass(frozen=True)
class Change:
    """A significant change against the golden result that does not fail the check, reported.

    ``subject`` is a variant (``dpo``: its rate moved) or a comparison (``sft->dpo``: the effect the
    golden result shows between two variants is gone, new or reversed); ``golden`` and ``current``
    are rates for a variant and effects (after rate - before rate) for a comparison.
    """

    subject: str
    criterion: str
    kind: str  # one of CHANGE_KINDS
    golden: float | None
    current: float | None
    p_value: float | None
    detail: str

    def __str__(self) -> str:
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{value:+.1%}" if "->" in self.subject else f"{value:.1%}"

        return f"{self.subject}/{self.criterion}: {self.kind.replace('_', ' ')}, {pct(self.golden)} → {pct(self.current)} ({self.detail})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _direction(counts: PairedCounts | None, alpha: float) -> int:
    """+1 a significant gain, -1 a significant loss, 0 neither (or no shared item)."""
    if counts is None or counts.gained == counts.lost or not is_significant(counts.p_value, alpha):
        return 0
    return 1 if counts.gained > counts.lost else -1


def _variant_change(variant: str, criterion: str, golden_cell: dict, current_cell: dict, golden_items: dict,
                    current_items: dict | None, tolerance: GoldenTolerance) -> Change | None:
    """A significant gain, or a significant drop below ``min_drop`` (a larger one is a regression)."""
    if current_items is not None:
        counts = paired_counts(golden_items, current_items, criterion)
        direction = _direction(counts, tolerance.alpha)
        if direction == 0 or (direction < 0 and large_enough(counts.before_rate - counts.after_rate, tolerance.min_drop)):
            return None
        return Change(variant, criterion, "gain" if direction > 0 else "small_drop", counts.before_rate, counts.after_rate,
                      counts.p_value, paired_detail(counts))
    if golden_cell["rate"] is None or current_cell["rate"] is None:
        return None
    detail = f"intervals apart: current [{current_cell['low']:.3f}, {current_cell['high']:.3f}], golden [{golden_cell['low']:.3f}, {golden_cell['high']:.3f}]"
    if current_cell["low"] > golden_cell["high"]:
        return Change(variant, criterion, "gain", golden_cell["rate"], current_cell["rate"], None, detail)
    if current_cell["high"] < golden_cell["low"] and not large_enough(golden_cell["rate"] - current_cell["rate"], tolerance.min_drop):
        return Change(variant, criterion, "small_drop", golden_cell["rate"], current_cell["rate"], None, detail)
    return None


def _effect_changes(results: dict[str, Any], golden: dict[str, Any], tolerance: GoldenTolerance) -> list[Change]:
    """For each comparison of ``results`` (``before -> after``) and criterion: the golden result's
    effect against the new one, each a paired McNemar at ``alpha`` on that side's own verdicts."""
    golden_verdicts, current_verdicts = verdicts_from_results(golden), verdicts_from_results(results)
    pairs = dict.fromkeys((c["before"], c["after"]) for c in results.get("comparisons", []) if isinstance(c, dict) and "before" in c)
    changes = []
    for before, after in pairs:
        if not all(v in golden_verdicts and v in current_verdicts for v in (before, after)):
            continue
        for criterion in golden.get("criteria", []):
            then = paired_counts(golden_verdicts[before], golden_verdicts[after], criterion)
            now = paired_counts(current_verdicts[before], current_verdicts[after], criterion)
            was, is_now = _direction(then, tolerance.alpha), _direction(now, tolerance.alpha)
            if was == is_now or then is None or now is None:
                continue
            kind = "effect_gone" if is_now == 0 else "effect_new" if was == 0 else "effect_reversed"
            detail = (f"golden {then.gained} gained / {then.lost} lost, p={then.p_value:.3g}; "
                      f"now {now.gained} gained / {now.lost} lost, p={now.p_value:.3g} (alpha {tolerance.alpha:g}, uncorrected)")
            changes.append(Change(f"{before}->{after}", criterion, kind, then.after_rate - then.before_rate,
                                  now.after_rate - now.before_rate, now.p_value, detail))
    return changes


def changes_against_golden(results: dict[str, Any], golden: dict[str, Any], tolerance: GoldenTolerance = GoldenTolerance()) -> list[Change]:
    """Every significant change against ``golden`` that ``compare_to_golden`` does not fail: variant
    gains and small drops, then comparison effects lost, gained or reversed."""
    if not has_evidence(golden):
        return []
    changes = []
    for variant, criterion, golden_cell, current_cell, golden_items, current_items, _ in golden_cells(results, golden):
        if current_cell is not None:
            found = _variant_change(variant, criterion, golden_cell, current_cell, golden_items, current_items, tolerance)
            changes += [found] if found is not None else []
    return changes + _effect_changes(results, golden, tolerance)


def check_files(results_path: str | Path, golden_path: str | Path,
                tolerance: GoldenTolerance = GoldenTolerance()) -> tuple[list[Regression], list[Change]]:
    """The regressions (which fail the check) and the other significant changes (reported) of a
    ``results.json`` against a golden one.

    Raises:
        InputError: as ``compare_files``.
    """

    results = load_results(results_path)
    golden = load_golden(golden_path)
    return compare_to_golden(results, golden, tolerance), changes_against_golden(results, golden, tolerance)
