"""From scored responses to the numbers a report shows: rates, paired comparisons, flips.

Pure: plain dicts of verdicts in, plain JSON-ready dicts out. The shape produced here is the
``results.json`` schema (see docs/notes/evaluation.md); the Markdown report, the chart, the rich
table and the golden comparison all read it.

Rates leave n/a verdicts out of numerator and denominator (see stage1.core.criteria). A comparison uses
the items where both models' verdicts apply, which are the same items for both because
applicability depends on the item alone. The Benjamini–Hochberg family is every testable
(comparison, criterion) cell of one evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stage1.core.criteria import CRITERION_NAMES, Verdict, score_response
from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.core.seeds import row_seed
from stage1.core.stats import benjamini_hochberg, cohens_h, mcnemar, paired_bootstrap, wilson_interval

RESULTS_SCHEMA = "stage1.eval.results/1"
POOLED_CATEGORY = "other (pooled)"

# verdicts[variant][item_id][criterion]
Verdicts = Mapping[str, Mapping[str, Mapping[str, Verdict]]]


def score_variants(items: Sequence[EvalItem], responses: Mapping[str, Mapping[str, EvalResponse]]) -> dict[str, dict[str, dict[str, Verdict]]]:
    """Score every variant's response to every item.

    Raises:
        ValueError: a variant lacks a response for some item.
    """
    scored: dict[str, dict[str, dict[str, Verdict]]] = {}
    for variant, by_item in responses.items():
        missing = [item.id for item in items if item.id not in by_item]
        if missing:
            raise ValueError(f"variant {variant!r} has no response for items {missing[:5]}")
        scored[variant] = {item.id: score_response(item, by_item[item.id]) for item in items}
    return scored


def rate_cell(verdicts: Iterable[Verdict], confidence: float) -> dict[str, Any]:
    """Successes, applicable n, n/a count, rate (None when nothing applies) and Wilson interval."""
    values = list(verdicts)
    applicable = [v for v in values if v is not None]
    successes = sum(1 for v in applicable if v)
    low, high = wilson_interval(successes, len(applicable), confidence)
    return {
        "successes": successes,
        "n": len(applicable),
        "not_applicable": len(values) - len(applicable),
        "rate": successes / len(applicable) if applicable else None,
        "low": low,
        "high": high,
    }


def rate_table(verdicts: Verdicts, item_ids: Sequence[str], confidence: float) -> dict[str, dict[str, Any]]:
    """``{variant: {criterion: rate_cell}}`` over ``item_ids``."""
    return {
        variant: {name: rate_cell((by_item[i][name] for i in item_ids), confidence) for name in CRITERION_NAMES}
        for variant, by_item in verdicts.items()
    }


def category_cells(items: Sequence[EvalItem], min_items: int) -> tuple[dict[str, list[str]], list[str]]:
    """Categories with at least ``min_items`` items get their own cell; the rest are pooled.

    Returns ``({cell: item_ids}, pooled_category_names)``. The pooled cell is present only when
    some category was pooled.
    """
    by_category: dict[str, list[str]] = {}
    for item in items:
        by_category.setdefault(item.category, []).append(item.id)
    cells = {name: ids for name, ids in sorted(by_category.items()) if len(ids) >= min_items}
    pooled = sorted(name for name in by_category if name not in cells)
    if pooled:
        cells[POOLED_CATEGORY] = [i for name in pooled for i in by_category[name]]
    return cells, pooled


def compare_cell(
    before: Mapping[str, Verdict], after: Mapping[str, Verdict], *, bootstrap_samples: int, seed: int, confidence: float
) -> dict[str, Any]:
    """One paired comparison of one criterion between two variants (p_adjusted filled in later)."""
    ids = [i for i in before if before[i] is not None and after.get(i) is not None]
    a = [int(bool(before[i])) for i in ids]
    b = [int(bool(after[i])) for i in ids]
    n01 = sum(1 for x, y in zip(a, b) if not x and y)
    n10 = sum(1 for x, y in zip(a, b) if x and not y)
    cell: dict[str, Any] = {"n": len(ids), "n01": n01, "n10": n10, "wins": n01, "losses": n10}
    if not ids:
        return {**cell, "rate_before": None, "rate_after": None, "lift": None, "cohens_h": None, "mcnemar": None, "bootstrap": None}
    rate_before, rate_after = sum(a) / len(a), sum(b) / len(b)
    test = mcnemar(n01, n10)
    boot = paired_bootstrap(a, b, samples=bootstrap_samples, seed=seed, confidence=confidence)
    return {
        **cell,
        "rate_before": rate_before,
        "rate_after": rate_after,
        "lift": rate_after - rate_before,
        "cohens_h": cohens_h(rate_before, rate_after),
        "mcnemar": {"statistic": test.statistic, "p_value": test.p_value, "method": test.method},
        "bootstrap": {"low": boot.low, "high": boot.high, "samples": boot.samples, "seed": boot.seed, "confidence": boot.confidence},
    }


def compare_variants(
    verdicts: Verdicts, pairs: Sequence[tuple[str, str]], *, q: float, bootstrap_samples: int, seed: int, confidence: float
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every (pair, criterion) comparison with BH-adjusted p-values; pairs with a missing side are skipped.

    Returns ``(comparisons, skipped)``; ``skipped`` names each pair left out and why.
    """
    comparisons: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for before, after in pairs:
        absent = [name for name in (before, after) if name not in verdicts]
        if absent:
            skipped.append({"before": before, "after": after, "reason": f"not evaluated: {', '.join(absent)}"})
            continue
        for name in CRITERION_NAMES:
            column_before = {i: v[name] for i, v in verdicts[before].items()}
            column_after = {i: v[name] for i, v in verdicts[after].items()}
            cell_seed = row_seed(seed, before, after, name, bits=64)  # 64 bits: the pinned bootstrap intervals
            cell = compare_cell(column_before, column_after, bootstrap_samples=bootstrap_samples, seed=cell_seed, confidence=confidence)
            comparisons.append({"before": before, "after": after, "criterion": name, **cell})
    testable = [c for c in comparisons if c["mcnemar"] is not None]
    if testable:
        rejected, adjusted = benjamini_hochberg([c["mcnemar"]["p_value"] for c in testable], q)
        for cell, reject, value in zip(testable, rejected, adjusted):
            cell["p_adjusted"] = value
            cell["significant"] = reject
    for cell in comparisons:
        cell.setdefault("p_adjusted", None)
        cell.setdefault("significant", False)
    return comparisons, skipped


def flipped_items(verdicts: Verdicts, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """For each compared pair and criterion, the item ids that went fail→pass (wins) and pass→fail (losses)."""
    flips = []
    for before, after in pairs:
        if before not in verdicts or after not in verdicts:
            continue
        for name in CRITERION_NAMES:
            wins, losses = [], []
            for item_id, verdict in verdicts[before].items():
                old, new = verdict[name], verdicts[after][item_id][name]
                if old is None or new is None or old == new:
                    continue
                (wins if new else losses).append(item_id)
            flips.append({"before": before, "after": after, "criterion": name, "wins": wins, "losses": losses})
    return flips


def item_rows(items: Sequence[EvalItem], responses: Mapping[str, Mapping[str, EvalResponse]], verdicts: Verdicts) -> list[dict[str, Any]]:
    """Per item: id, instruction, category, and per variant its response, stop reason and verdicts."""
    rows = []
    for item in items:
        outcomes = {}
        for variant, by_item in responses.items():
            response = by_item[item.id]
            outcomes[variant] = {
                "prompt": response.prompt,
                "response": response.response,
                "completion_text": response.completion_text,
                "stop_reason": response.stop_reason,
                "runaway": response.runaway,
                "num_tokens": response.num_tokens,
                "criteria": dict(verdicts[variant][item.id]),
            }
        rows.append({"id": item.id, "instruction": item.instruction, "category": item.category, "outcomes": outcomes})
    return rows


def summarise(
    items: Sequence[EvalItem],
    responses: Mapping[str, Mapping[str, EvalResponse]],
    *,
    pairs: Sequence[tuple[str, str]],
    confidence: float,
    q: float,
    bootstrap_samples: int,
    seed: int,
    min_category_items: int,
) -> dict[str, Any]:
    """The scored part of ``results.json`` (the caller adds settings, provenance and skipped variants).

    Raises:
        ValueError: a variant lacks a response for some item.
    """
    verdicts = score_variants(items, responses)
    item_ids = [item.id for item in items]
    cells, pooled = category_cells(items, min_category_items)
    comparisons, skipped_pairs = compare_variants(
        verdicts, pairs, q=q, bootstrap_samples=bootstrap_samples, seed=seed, confidence=confidence
    )
    return {
        "schema": RESULTS_SCHEMA,
        "criteria": list(CRITERION_NAMES),
        "variants": list(responses),
        "num_items": len(items),
        "items": item_rows(items, responses, verdicts),
        "rates": rate_table(verdicts, item_ids, confidence),
        "categories": {
            "min_items": min_category_items,
            "pooled": pooled,
            "sizes": {cell: len(ids) for cell, ids in cells.items()},
            "rates": {cell: rate_table(verdicts, ids, confidence) for cell, ids in cells.items()},
        },
        "comparisons": comparisons,
        "skipped_comparisons": skipped_pairs,
        "flips": flipped_items(verdicts, pairs),
        "statistics": {"confidence": confidence, "q": q, "bootstrap_samples": bootstrap_samples, "seed": seed, "significance": "p_adjusted <= q"},
    }


def verdicts_from_results(results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Verdict]]]:
    """``{variant: {item_id: {criterion: verdict}}}`` read back from a results dict."""
    verdicts: dict[str, dict[str, dict[str, Verdict]]] = {}
    for row in results.get("items", []):
        for variant, outcome in row["outcomes"].items():
            verdicts.setdefault(variant, {})[row["id"]] = dict(outcome["criteria"])
    return verdicts

