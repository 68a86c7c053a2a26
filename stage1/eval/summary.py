"""From scored responses to the numbers a report shows: rates, paired comparisons, flips.

Pure: verdicts in (dicts, or the compact columns of ``stage1.eval.columns`` that every figure is
computed from), plain JSON-ready dicts out. The shape produced here is the ``results.json`` schema (see docs/notes/evaluation.md); the Markdown report, the chart, the rich
table and the golden comparison all read it.

Rates leave n/a verdicts out of numerator and denominator (see stage1.core.criteria). A comparison uses
the items where both models' verdicts apply, which are the same items for both because
applicability depends on the item alone. Benjamini–Hochberg runs once per named family of
comparisons (``eval.families``): a family holds every testable (comparison, criterion) cell of its
comparisons, so trivially significant cells of a side check (``base_raw -> base``) cannot loosen
the threshold of the comparisons that answer the study.

Each comparison also says what it could have detected (``stats.mcnemar_detectable_lift`` at 80%
power, for its n and observed discordance, at the threshold Benjamini–Hochberg applies to it in its
family: ``stats.bh_detection_alpha``, ``(k + 1)·q/m`` with ``m`` the family's testable cells and
``k`` the other cells it rejects), and its lift at equal response length
(``stage1.core.length_control``: a paired logistic model with the log length ratio as a covariate,
every discordant item kept): a lift that vanishes there came with a change of length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from stage1.core.criteria import CRITERION_NAMES, Verdict, score_response
from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.core.length_control import length_controlled, log_length_ratio
from stage1.core.lengths import word_count
from stage1.core.seeds import row_seed
from stage1.core.stats import (
    DEFAULT_POWER,
    benjamini_hochberg,
    bh_detection_alpha,
    cohens_h,
    mcnemar,
    mcnemar_detectable_lift,
)
from stage1.eval.bootstrap import fast_paired_bootstrap  # the core's paired_bootstrap, drawn in numpy
from stage1.eval.columns import (
    NOT_APPLICABLE,
    VerdictColumns,
    column_flips,
    column_lengths,
    column_rates,
    from_verdicts,
    rate_from_counts,
)
from stage1.eval.slices import slice_results

RESULTS_SCHEMA = "stage1.eval.results/1"
POOLED_CATEGORY = "other (pooled)"
DEFAULT_FAMILY = "all"  # the family of every comparison when none are named
DETECTABLE_ALPHA_RULE = "(k + 1)·q/m: m testable cells in the family, k other cells it rejects"

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
    return rate_from_counts(sum(1 for v in applicable if v), len(applicable), len(values) - len(applicable), confidence)


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


def controlled_cell(before: Sequence[int], after: Sequence[int], ratio: Callable[[int], float]) -> dict[str, Any] | None:
    """The comparison at equal response length (``stage1.core.length_control``): every discordant
    item kept, its log length ratio (``ratio(position)``) a covariate. None when no item is discordant."""
    wins = [ratio(k) for k, (a, b) in enumerate(zip(before, after)) if b and not a]
    losses = [ratio(k) for k, (a, b) in enumerate(zip(before, after)) if a and not b]
    result = length_controlled(len(before), wins, losses)
    if result is None:
        return None
    return {"lift": result.lift, "low": result.low, "high": result.high, "log_odds": result.log_odds, "se": result.se, "p_value": result.p_value,
            "length_slope": result.length_slope, "discordant": result.discordant}


def paired_cell(before: np.ndarray, after: np.ndarray, *, bootstrap_samples: int, seed: int, confidence: float,
                ratio: Callable[[int], float] | None = None) -> dict[str, Any]:
    """One paired comparison of one criterion over the items where both verdicts apply (``before`` and
    ``after``: 0/1 arrays, item by item); ``ratio(position)`` is that item's log length ratio (after
    over before), for the length control. ``p_adjusted``, ``significant`` and ``detectable_lift`` are
    filled in by ``compare_columns``, which knows the family."""
    n = len(before)
    n01, n10 = int(np.count_nonzero((before == 0) & (after == 1))), int(np.count_nonzero((before == 1) & (after == 0)))
    cell: dict[str, Any] = {"n": n, "n01": n01, "n10": n10, "wins": n01, "losses": n10}
    if not n:
        return {**cell, "rate_before": None, "rate_after": None, "lift": None, "cohens_h": None, "mcnemar": None, "bootstrap": None,
                "detectable_lift": None, "detectable_lift_alpha": None, "length_controlled": None}
    rate_before, rate_after = int(before.sum()) / n, int(after.sum()) / n
    test = mcnemar(n01, n10)
    boot = fast_paired_bootstrap(before, after, samples=bootstrap_samples, seed=seed, confidence=confidence)
    return {
        **cell,
        "rate_before": rate_before,
        "rate_after": rate_after,
        "lift": rate_after - rate_before,
        "cohens_h": cohens_h(rate_before, rate_after),
        "mcnemar": {"statistic": test.statistic, "p_value": test.p_value, "method": test.method},
        "bootstrap": {"low": boot.low, "high": boot.high, "samples": boot.samples, "seed": boot.seed, "confidence": boot.confidence},
        "length_controlled": None if ratio is None else controlled_cell(before.tolist(), after.tolist(), ratio),
    }


def compare_cell(
    before: Mapping[str, Verdict], after: Mapping[str, Verdict], *, bootstrap_samples: int, seed: int, confidence: float,
    ratio: Callable[[str], float] | None = None,
) -> dict[str, Any]:
    """``paired_cell`` of two ``{item_id: verdict}`` columns; ``ratio(item_id)`` is the item's log length ratio."""
    ids = [i for i in before if before[i] is not None and after.get(i) is not None]
    a = np.array([int(bool(before[i])) for i in ids], dtype=np.int8)
    b = np.array([int(bool(after[i])) for i in ids], dtype=np.int8)
    by_position = None if ratio is None else (lambda k: ratio(ids[k]))
    return paired_cell(a, b, bootstrap_samples=bootstrap_samples, seed=seed, confidence=confidence, ratio=by_position)


def adjust_family(cells: list[dict[str, Any]], q: float) -> None:
    """Benjamini–Hochberg over one family's testable cells, then each cell's detectable lift at
    the threshold BH applies to it in that family (``stats.bh_detection_alpha``)."""
    testable = [c for c in cells if c["mcnemar"] is not None]
    if not testable:
        return
    rejected, adjusted = benjamini_hochberg([c["mcnemar"]["p_value"] for c in testable], q)
    total = sum(rejected)
    for cell, reject, value in zip(testable, rejected, adjusted):
        alpha = bh_detection_alpha(q, len(testable), total - int(reject))
        cell.update(p_adjusted=value, significant=reject, detectable_lift_alpha=alpha,
                    detectable_lift=mcnemar_detectable_lift(cell["n"], cell["n01"] + cell["n10"], alpha=alpha, power=DEFAULT_POWER))


def family_of(pair: tuple[str, str], families: Mapping[str, Sequence[tuple[str, str]]] | None) -> str:
    """The named family holding ``pair``; a pair in none forms its own (named ``before->after``)."""
    if families is None:
        return DEFAULT_FAMILY
    for name, members in families.items():
        if tuple(pair) in {tuple(member) for member in members}:
            return name
    return f"{pair[0]}->{pair[1]}"


def compare_columns(
    columns: VerdictColumns, pairs: Sequence[tuple[str, str]], *, q: float, bootstrap_samples: int, seed: int, confidence: float,
    families: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every (pair, criterion) comparison with BH-adjusted p-values; pairs with a missing side are skipped.

    Benjamini–Hochberg runs within each family (``family_of``); ``families=None`` puts every
    comparison in one. The columns' word counts, where known, add the length-matched view.

    Returns ``(comparisons, skipped)``; ``skipped`` names each pair left out and why.
    """
    comparisons: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for before, after in pairs:
        absent = [name for name in (before, after) if name not in columns.verdicts]
        if absent:
            skipped.append({"before": before, "after": after, "reason": f"not evaluated: {', '.join(absent)}"})
            continue
        family = family_of((before, after), families)
        for k, name in enumerate(CRITERION_NAMES):
            old, new = columns.verdicts[before][:, k], columns.verdicts[after][:, k]
            rows = np.flatnonzero((old != NOT_APPLICABLE) & (new != NOT_APPLICABLE))
            ratio = None if columns.words is None else _ratio(columns.words[before], columns.words[after], rows)
            cell_seed = row_seed(seed, before, after, name, bits=64)  # 64 bits: the pinned bootstrap intervals
            cell = paired_cell(old[rows], new[rows], bootstrap_samples=bootstrap_samples, seed=cell_seed, confidence=confidence, ratio=ratio)
            comparisons.append({"before": before, "after": after, "criterion": name, "family": family, **cell})
    for family in dict.fromkeys(c["family"] for c in comparisons):
        adjust_family([c for c in comparisons if c["family"] == family], q)
    for cell in comparisons:
        for key, default in (("p_adjusted", None), ("significant", False), ("detectable_lift", None), ("detectable_lift_alpha", None)):
            cell.setdefault(key, default)
    return comparisons, skipped


def _ratio(before: np.ndarray, after: np.ndarray, rows: np.ndarray) -> Callable[[int], float]:
    """The log length ratio of the item at a position among ``rows``."""
    return lambda position: log_length_ratio(int(before[rows[position]]), int(after[rows[position]]))


def compare_variants(
    verdicts: Verdicts, pairs: Sequence[tuple[str, str]], *, q: float, bootstrap_samples: int, seed: int, confidence: float,
    families: Mapping[str, Sequence[tuple[str, str]]] | None = None, words: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """``compare_columns`` of ``verdicts[variant][item_id][criterion]``; ``words[variant][item_id]``
    (response word counts) adds the length-matched view."""
    item_ids = list(dict.fromkeys(i for by_item in verdicts.values() for i in by_item))
    columns = from_verdicts(verdicts, item_ids, words=words)
    return compare_columns(columns, pairs, q=q, bootstrap_samples=bootstrap_samples, seed=seed, confidence=confidence, families=families)


def response_outcome(response: EvalResponse, verdicts: Mapping[str, Verdict]) -> dict[str, Any]:
    """One variant's entry in an item's ``outcomes``: its response, stop reason and verdicts."""
    return {
        "prompt": response.prompt,
        "response": response.response,
        "completion_text": response.completion_text,
        "stop_reason": response.stop_reason,
        "runaway": response.runaway,
        "num_tokens": response.num_tokens,
        "criteria": dict(verdicts),
    }


def item_row(item: EvalItem, outcomes: dict[str, Any]) -> dict[str, Any]:
    """An entry of results.json's ``items``: id, instruction, category and every variant's outcome."""
    return {"id": item.id, "instruction": item.instruction, "category": item.category, "outcomes": outcomes}


def item_rows(items: Sequence[EvalItem], responses: Mapping[str, Mapping[str, EvalResponse]], verdicts: Verdicts) -> list[dict[str, Any]]:
    """Per item: id, instruction, category, and per variant its response, stop reason and verdicts."""
    return [item_row(item, {variant: response_outcome(by_item[item.id], verdicts[variant][item.id]) for variant, by_item in responses.items()})
            for item in items]


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
    families: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """The scored part of ``results.json`` (the caller adds settings, provenance and skipped variants).

    ``families`` names the Benjamini–Hochberg families (``compare_variants``); None: one family.

    Raises:
        ValueError: a variant lacks a response for some item.
    """
    verdicts = score_variants(items, responses)
    item_ids = [item.id for item in items]
    words = {variant: {i: word_count(r.response) for i, r in by_item.items()} for variant, by_item in responses.items()}
    tokens = {variant: {i: r.num_tokens for i, r in by_item.items()} for variant, by_item in responses.items()}
    columns = from_verdicts(verdicts, item_ids, words=words, tokens=tokens)
    summary = summarise_columns(items, columns, pairs=pairs, confidence=confidence, q=q, bootstrap_samples=bootstrap_samples, seed=seed,
                                min_category_items=min_category_items, families=families)
    return {**summary, "items": item_rows(items, responses, verdicts)}


def summarise_columns(
    items: Sequence[EvalItem],
    columns: VerdictColumns,
    *,
    pairs: Sequence[tuple[str, str]],
    confidence: float,
    q: float,
    bootstrap_samples: int,
    seed: int,
    min_category_items: int,
    families: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """``summarise`` but ``items``, from verdict columns over ``items`` (in their order)."""
    cells, pooled = category_cells(items, min_category_items)
    position = {item_id: k for k, item_id in enumerate(columns.item_ids)}
    compare = partial(compare_columns, q=q, bootstrap_samples=bootstrap_samples, seed=seed, confidence=confidence, families=families)
    comparisons, skipped_pairs = compare(columns, pairs)
    slices = slice_results(items, columns, pairs, confidence=confidence, compare=compare)
    named = {family_of(pair, families): [] for pair in pairs}
    for pair in pairs:
        named[family_of(pair, families)].append(f"{pair[0]}->{pair[1]}")
    return {
        "schema": RESULTS_SCHEMA,
        "criteria": list(CRITERION_NAMES),
        "variants": columns.variants,
        "num_items": len(items),
        "rates": column_rates(columns, confidence),
        "categories": {
            "min_items": min_category_items,
            "pooled": pooled,
            "sizes": {cell: len(ids) for cell, ids in cells.items()},
            "rates": {cell: column_rates(columns.take([position[i] for i in ids]), confidence) for cell, ids in cells.items()},
        },
        "comparisons": comparisons,
        **({"slices": slices} if slices else {}),
        "skipped_comparisons": skipped_pairs,
        "flips": column_flips(columns, pairs),
        "lengths": column_lengths(columns),
        "statistics": {"confidence": confidence, "q": q, "bootstrap_samples": bootstrap_samples, "seed": seed, "significance": "p_adjusted <= q",
                       "families": named, "power": DEFAULT_POWER, "detectable_lift_alpha": DETECTABLE_ALPHA_RULE},
    }


def verdicts_from_results(results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Verdict]]]:
    """``{variant: {item_id: {criterion: verdict}}}`` read back from a results dict."""
    verdicts: dict[str, dict[str, dict[str, Verdict]]] = {}
    for row in results.get("items", []):
        for variant, outcome in row["outcomes"].items():
            verdicts.setdefault(variant, {})[row["id"]] = dict(outcome["criteria"])
    return verdicts

