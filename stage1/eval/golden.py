"""Golden results: fixed scoring fixtures, and the regression check against a reference evaluation.

Two kinds of golden data live here:

1. ``fixtures/golden/``: fixed responses to a fixed item set with their exact expected verdicts
   and summary statistics, as JSON a person can diff. Re-scoring them must reproduce the files
   exactly, so any change to a criterion or a statistic shows up as a diff. After a deliberate
   change, regenerate them with ``write_fixture_expectations`` (command in fixtures/README.md).
2. A reference ``results.json`` (for example the tiny pipeline's), compared with a new one by
   ``compare_to_golden``: a criterion regressed when its drop is both significant and large.

Tolerances (``GoldenTolerance``, the CLI's ``--golden-alpha`` and ``--golden-min-drop``): a drop
fails the check when it is significant, paired McNemar ``p <= alpha`` (0.01) when item ids match,
otherwise the two Wilson intervals apart (current high < golden low), **and** at least ``min_drop``
(5 points). Greedy decoding on another GPU or library version flips a few items both ways: that is
neither significant nor large. A criterion the golden result has and the new one lacks is a
regression (the check fails closed), and so is a golden result with no evidence at all (no variant
and criterion with an item).

The check is two-sided in what it reports (``stage1.eval.golden_changes``): every significant change
at ``alpha`` that is not a failing drop is reported too, without failing: a gain, a significant drop
smaller than ``min_drop``, and, for each comparison of the new results (``sft -> dpo``), an effect
the golden result shows that is gone or reversed, or one it did not show. An improvement that
disappears is then visible even when no single variant dropped far enough to fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.core.errors import InputError
from stage1.core.eval_items import EvalResponse
from stage1.core.stats import is_significant, mcnemar
from stage1.eval.report import load_results
from stage1.eval.summary import summarise, verdicts_from_results
from stage1.io.atomic import atomic_write_json, atomic_write_jsonl
from stage1.io.plain import read_json
from stage1.io.readers import iter_jsonl
from stage1.io.records import read_eval_items, read_records

MIN_PAIRED_OVERLAP = 0.5  # share of the golden items that must be present for a paired test
RATE_EPSILON = 1e-9  # rates are ratios of counts: 0.15 - 0.10 is 0.04999999999999999 in floats


def large_enough(drop: float, min_drop: float) -> bool:
    """Whether a drop in rate reaches ``min_drop`` (inclusive), read through float rounding."""
    return drop + RATE_EPSILON >= min_drop


@dataclass(frozen=True)
class GoldenTolerance:
    """How large and how certain a drop must be to count as a regression."""

    alpha: float = 0.01  # McNemar p-value at or below which a paired drop is significant
    min_drop: float = 0.05  # smallest drop in rate (absolute) that counts

    def __post_init__(self):
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0.0 <= self.min_drop < 1.0:
            raise ValueError(f"min_drop must be in [0, 1), got {self.min_drop}")


@dataclass(frozen=True)
class Regression:
    """One criterion of one variant that got significantly worse (or lost its evidence)."""

    variant: str
    criterion: str
    method: str  # "mcnemar", "interval" or "missing"
    golden_rate: float | None
    current_rate: float | None
    p_value: float | None
    n: int
    detail: str

    def __str__(self) -> str:
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1%}"

        return f"{self.variant}/{self.criterion}: {pct(self.golden_rate)} → {pct(self.current_rate)} ({self.detail})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PairedCounts:
    """Paired verdicts of one criterion on the items both sides scored."""

    n: int
    lost: int  # passed before, failed after (n10)
    gained: int  # failed before, passed after (n01)
    before_rate: float
    after_rate: float
    p_value: float
    method: str


def paired_counts(before: dict, after: dict, criterion: str) -> PairedCounts | None:
    """McNemar on the items that have a verdict for ``criterion`` on both sides (None: no such item)."""
    ids = [i for i, v in before.items() if v.get(criterion) is not None and after.get(i, {}).get(criterion) is not None]
    if not ids:
        return None
    old = [bool(before[i][criterion]) for i in ids]
    new = [bool(after[i][criterion]) for i in ids]
    gained = sum(1 for a, b in zip(old, new) if not a and b)
    lost = sum(1 for a, b in zip(old, new) if a and not b)
    test = mcnemar(gained, lost)
    return PairedCounts(len(ids), lost, gained, sum(old) / len(ids), sum(new) / len(ids), test.p_value, test.method)


def paired_detail(counts: PairedCounts) -> str:
    return (f"paired on {counts.n} items: {counts.lost} lost, {counts.gained} gained, "
            f"McNemar p={counts.p_value:.3g} ({counts.method})")


def _paired(variant: str, criterion: str, golden: dict, current: dict, tolerance: GoldenTolerance) -> Regression | None:
    counts = paired_counts(golden, current, criterion)
    if counts is None:
        return None
    drop = counts.before_rate - counts.after_rate
    if counts.lost > counts.gained and is_significant(counts.p_value, tolerance.alpha) and large_enough(drop, tolerance.min_drop):
        return Regression(variant, criterion, "mcnemar", counts.before_rate, counts.after_rate, counts.p_value, counts.n,
                          paired_detail(counts))
    return None


def _unpaired(variant: str, criterion: str, golden: dict, current: dict, tolerance: GoldenTolerance) -> Regression | None:
    if golden["rate"] is None:
        return None
    drop = golden["rate"] - current["rate"]
    if current["high"] < golden["low"] and large_enough(drop, tolerance.min_drop):
        detail = (
            f"intervals apart: current [{current['low']:.3f}, {current['high']:.3f}] "
            f"below golden [{golden['low']:.3f}, {golden['high']:.3f}]"
        )
        return Regression(variant, criterion, "interval", golden["rate"], current["rate"], None, current["n"], detail)
    return None


def _missing(variant: str, criterion: str, golden_rate: float | None, what: str) -> Regression:
    return Regression(variant, criterion, "missing", golden_rate, None, None, 0, f"{what}; the check fails closed")


def golden_cells(results: dict[str, Any], golden: dict[str, Any]):
    """Each golden (variant, criterion) with evidence: ``(variant, criterion, golden cell, current
    cell or None, golden verdicts, current verdicts or None when not paired)``; ``current cell`` is
    None when the variant or criterion has no applicable item in ``results``."""
    golden_verdicts = verdicts_from_results(golden)
    current_verdicts = verdicts_from_results(results)
    for variant, golden_rates in golden.get("rates", {}).items():
        current_rates = results.get("rates", {}).get(variant)
        golden_items = golden_verdicts.get(variant, {})
        current_items = current_verdicts.get(variant, {})
        shared = sum(1 for i in golden_items if i in current_items)
        paired = bool(golden_items) and shared >= MIN_PAIRED_OVERLAP * len(golden_items)
        for criterion, golden_cell in golden_rates.items():
            if golden_cell["n"] == 0:
                continue
            current_cell = None if current_rates is None else current_rates.get(criterion)
            if current_cell is not None and current_cell["n"] == 0:
                current_cell = None
            yield variant, criterion, golden_cell, current_cell, golden_items, current_items if paired else None, current_rates is None


def compare_to_golden(results: dict[str, Any], golden: dict[str, Any], tolerance: GoldenTolerance = GoldenTolerance()) -> list[Regression]:
    """Every (variant, criterion) of ``golden`` that regressed in ``results``.

    Paired McNemar on the shared items when at least half of the golden items were evaluated
    again; otherwise Wilson-interval separation. A variant or criterion with evidence in the
    golden results but none in ``results`` is reported as a ``missing`` regression.
    """
    if not has_evidence(golden):
        return [_missing("(all)", "(all)", None, "the golden result holds no variant and criterion with an item")]
    regressions: list[Regression] = []
    for variant, criterion, golden_cell, current_cell, golden_items, current_items, absent in golden_cells(results, golden):
        if current_cell is None:
            what = "variant not evaluated" if absent else "no applicable items in the new results"
            regressions.append(_missing(variant, criterion, golden_cell["rate"], what))
        elif current_items is not None:
            found = _paired(variant, criterion, golden_items, current_items, tolerance)
            regressions += [found] if found is not None else []
        else:
            found = _unpaired(variant, criterion, golden_cell, current_cell, tolerance)
            regressions += [found] if found is not None else []
    return regressions


def has_evidence(golden: dict[str, Any]) -> bool:
    """Whether any (variant, criterion) of a results dict was scored on at least one item."""
    rates = golden.get("rates")
    cells = [cell for by_criterion in (rates.values() if isinstance(rates, dict) else ()) if isinstance(by_criterion, dict) for cell in by_criterion.values()]
    return any(isinstance(cell, dict) and isinstance(cell.get("n"), int) and cell["n"] > 0 for cell in cells)


def load_golden(path: str | Path, *, missing_hint: str | None = None,
                save_hint: str = "save a golden result from a real evaluation with --save-golden") -> dict[str, Any]:
    """Read a golden ``results.json`` that a comparison can use.

    Raises:
        InputError: the file is missing or not a results object, or it holds no evidence (a
            check against nothing would pass whatever the results).
    """

    golden = load_results(path) if missing_hint is None else load_results(path, missing_hint=missing_hint)
    if not has_evidence(golden):
        raise InputError(
            "no variant and criterion with an evaluated item: a check against it would pass anything",
            path=path, field="rates", hint=save_hint,
        )
    return golden


def compare_files(results_path: str | Path, golden_path: str | Path, tolerance: GoldenTolerance = GoldenTolerance()) -> list[Regression]:
    """``compare_to_golden`` on two ``results.json`` files (``golden_changes.check_files`` also gives the changes).

    Raises:
        InputError: either file is missing or not a JSON object, or the golden file holds no
            evidence (``load_golden``).
    """

    return compare_to_golden(load_results(results_path), load_golden(golden_path), tolerance)


# ---------------------------------------------------------------- scoring fixtures

ITEMS_FILE = "items.jsonl"
RESPONSES_FILE = "responses.jsonl"
SCORES_FILE = "expected_scores.jsonl"
SUMMARY_FILE = "expected_summary.json"
FIXTURE_PAIRS = (("base", "sft"),)
FIXTURE_STATISTICS = {"confidence": 0.95, "q": 0.05, "bootstrap_samples": 200, "seed": 0, "min_category_items": 3}


def score_fixture(folder: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Re-score the fixed responses in ``folder``: per-response verdict rows and the summary.

    Raises:
        InputError: a malformed items or responses file.
    """
    folder = Path(folder)
    items = read_eval_items(folder / ITEMS_FILE)
    responses: dict[str, dict[str, EvalResponse]] = {}
    for response in read_records(folder / RESPONSES_FILE, EvalResponse):
        responses.setdefault(response.variant, {})[response.item_id] = response
    summary = summarise(items, responses, pairs=FIXTURE_PAIRS, **FIXTURE_STATISTICS)
    rows = [
        {"item_id": row["id"], "variant": variant, "criteria": outcome["criteria"]}
        for row in summary["items"]
        for variant, outcome in row["outcomes"].items()
    ]
    kept = {key: summary[key] for key in ("criteria", "variants", "rates", "categories", "comparisons", "flips", "statistics")}
    return rows, kept


def read_fixture_expectations(folder: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    folder = Path(folder)
    rows = [row for _, row in iter_jsonl(folder / SCORES_FILE)]
    return rows, read_json(folder / SUMMARY_FILE)


def write_fixture_expectations(folder: str | Path) -> None:
    """Overwrite the expected scores and summary with what the code computes now."""
    rows, summary = score_fixture(folder)
    atomic_write_jsonl(Path(folder) / SCORES_FILE, rows)
    atomic_write_json(Path(folder) / SUMMARY_FILE, summary)



# ---------------------------------------------------------------- golden results of a whole run

GOLDEN_RESULT_KEYS = ("schema", "num_items", "variants", "criteria", "rates")


def golden_from_results(results: dict[str, Any]) -> dict[str, Any]:
    """What ``compare_to_golden`` needs of a run, small enough to commit and diff: the rates and each
    item's verdicts per variant and criterion (the responses themselves stay in the run's results)."""
    golden = {key: results[key] for key in GOLDEN_RESULT_KEYS if key in results}
    golden["items"] = [
        {
            "id": row["id"],
            "category": row.get("category"),
            "outcomes": {variant: {"criteria": outcome["criteria"]} for variant, outcome in sorted(row["outcomes"].items())},
        }
        for row in results.get("items", [])
    ]
    golden["provenance"] = {"decoding": results.get("provenance", {}).get("decoding")}
    return golden


def save_golden(results_path: str | Path, golden_path: str | Path) -> Path:
    """Write ``golden_from_results`` of a ``results.json`` (the CLI's ``evaluate --save-golden``)."""

    return atomic_write_json(golden_path, golden_from_results(load_results(results_path)))
