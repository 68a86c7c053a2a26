"""Golden results: fixed scoring fixtures, and the regression check against a reference evaluation.

Two kinds of golden data live here:

1. ``fixtures/golden/``: fixed responses to a fixed item set with their exact expected verdicts
   and summary statistics, as JSON a person can diff. Re-scoring them must reproduce the files
   exactly, so any change to a criterion or a statistic shows up as a diff. After a deliberate
   change, regenerate them with ``write_fixture_expectations`` (command in fixtures/README.md).
2. A reference ``results.json`` (for example the tiny pipeline's), compared with a new one by
   ``compare_to_golden``: a criterion regressed when its drop is both significant and large.

Tolerances (``GoldenTolerance``): paired McNemar ``p <= alpha`` (0.01) **and** a drop of at least
``min_drop`` (5 points) when item ids match; otherwise the two Wilson intervals must not overlap
(current high < golden low) **and** the drop is at least ``min_drop``. Greedy decoding on another
GPU or library version flips a few items both ways: that is neither significant nor large. A
criterion the golden result has and the new one lacks is a regression (the check fails closed),
and so is a golden result with no evidence at all (no variant and criterion with an item).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.core.eval_items import EvalResponse
from stage1.core.stats import is_significant, mcnemar
from stage1.eval.summary import summarise, verdicts_from_results
from stage1.io.atomic import atomic_write_json, atomic_write_jsonl
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


def _paired(variant: str, criterion: str, golden: dict, current: dict, tolerance: GoldenTolerance) -> Regression | None:
    ids = [i for i, v in golden.items() if v.get(criterion) is not None and current.get(i, {}).get(criterion) is not None]
    if not ids:
        return None
    before = [bool(golden[i][criterion]) for i in ids]
    after = [bool(current[i][criterion]) for i in ids]
    n01 = sum(1 for a, b in zip(before, after) if not a and b)
    n10 = sum(1 for a, b in zip(before, after) if a and not b)
    golden_rate, current_rate = sum(before) / len(ids), sum(after) / len(ids)
    test = mcnemar(n01, n10)
    drop = golden_rate - current_rate
    if n10 > n01 and is_significant(test.p_value, tolerance.alpha) and large_enough(drop, tolerance.min_drop):
        detail = f"paired on {len(ids)} items: {n10} lost, {n01} gained, McNemar p={test.p_value:.3g} ({test.method})"
        return Regression(variant, criterion, "mcnemar", golden_rate, current_rate, test.p_value, len(ids), detail)
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


def compare_to_golden(results: dict[str, Any], golden: dict[str, Any], tolerance: GoldenTolerance = GoldenTolerance()) -> list[Regression]:
    """Every (variant, criterion) of ``golden`` that regressed in ``results``.

    Paired McNemar on the shared items when at least half of the golden items were evaluated
    again; otherwise Wilson-interval separation. A variant or criterion with evidence in the
    golden results but none in ``results`` is reported as a ``missing`` regression.
    """
    if not has_evidence(golden):
        return [_missing("(all)", "(all)", None, "the golden result holds no variant and criterion with an item")]
    golden_verdicts = verdicts_from_results(golden)
    current_verdicts = verdicts_from_results(results)
    regressions: list[Regression] = []
    for variant, golden_rates in golden.get("rates", {}).items():
        current_rates = results.get("rates", {}).get(variant)
        for criterion, golden_cell in golden_rates.items():
            if golden_cell["n"] == 0:
                continue
            if current_rates is None:
                regressions.append(_missing(variant, criterion, golden_cell["rate"], "variant not evaluated"))
                continue
            current_cell = current_rates.get(criterion)
            if current_cell is None or current_cell["n"] == 0:
                regressions.append(_missing(variant, criterion, golden_cell["rate"], "no applicable items in the new results"))
                continue
            golden_items = golden_verdicts.get(variant, {})
            current_items = current_verdicts.get(variant, {})
            shared = sum(1 for i in golden_items if i in current_items)
            if golden_items and shared >= MIN_PAIRED_OVERLAP * len(golden_items):
                found = _paired(variant, criterion, golden_items, current_items, tolerance)
            else:
                found = _unpaired(variant, criterion, golden_cell, current_cell, tolerance)
            if found is not None:
                regressions.append(found)
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
    from stage1.core.errors import InputError
    from stage1.eval.report import load_results

    golden = load_results(path) if missing_hint is None else load_results(path, missing_hint=missing_hint)
    if not has_evidence(golden):
        raise InputError(
            "no variant and criterion with an evaluated item: a check against it would pass anything",
            path=path, field="rates", hint=save_hint,
        )
    return golden


def compare_files(results_path: str | Path, golden_path: str | Path, tolerance: GoldenTolerance = GoldenTolerance()) -> list[Regression]:
    """``compare_to_golden`` on two ``results.json`` files.

    Raises:
        InputError: either file is missing or not a JSON object, or the golden file holds no
            evidence (``load_golden``).
    """
    from stage1.eval.report import load_results

    results = load_results(results_path)
    return compare_to_golden(results, load_golden(golden_path), tolerance)


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
    return rows, json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))


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
    from stage1.eval.report import load_results

    return atomic_write_json(golden_path, golden_from_results(load_results(results_path)))
