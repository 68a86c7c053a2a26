"""From scored responses to the numbers a report shows: rates, paired comparisons, flips.

Pure: plain dicts of verdicts in, plain JSON-ready dicts out. The shape produced here is the
``results.json`` schema (see docs/notes/evaluation.md); the Markdown report, the chart, the rich
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

from stage1.core.criteria import CRITERION_NAMES, Verdict, score_response
from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.core.length_control import length_controlled, log_length_ratio
from stage1.core.lengths import response_lengths, word_count
from stage1.core.seeds import row_seed
from stage1.core.stats import (
    DEFAULT_POWER,
    benjamini_hochberg,
    bh_detection_alpha,
    cohens_h,
    mcnemar,
    mcnemar_detectable_lift,
    wilson_interval,
)
from stage1.eval.bootstrap import fast_paired_bootstrap  # the core's paired_bootstrap, drawn in numpy
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


def _discordance(a: Sequence[int], b: Sequence[int]) -> tuple[int, int]:
    return sum(1 for x, y in zip(a, b) if not x and y), sum(1 for x, y in zip(a, b) if x and not y)


def controlled_cell(ids: Sequence[str], before: Sequence[int], after: Sequence[int], ratio: Callable[[str], float]) -> dict[str, Any] | None:
    """The comparison at equal response length (``stage1.core.length_control``): every discordant
    item kept, its log length ratio a covariate. None when no item is discordant."""
    wins = [ratio(i) for i, a, b in zip(ids, before, after) if b and not a]
    losses = [ratio(i) for i, a, b in zip(ids, before, after) if a and not b]
    result = length_controlled(len(ids), wins, losses)
    if result is None:
        return None
    return {"lift": result.lift, "low": result.low, "high": result.high, "log_odds": result.log_odds, "se": result.se, "p_value": result.p_value,
            "length_slope": result.length_slope, "discordant": result.discordant}


def compare_cell(
    before: Mapping[str, Verdict], after: Mapping[str, Verdict], *, bootstrap_samples: int, seed: int, confidence: float,
    ratio: Callable[[str], float] | None = None,
) -> dict[str, Any]:
    """One paired comparison of one criterion between two variants (``p_adjusted``, ``significant``
    and ``detectable_lift`` filled in by ``compare_variants``, which knows the family).

    ``ratio(item_id)`` is the item's log length ratio (after over before), for the length control.
    """
    ids = [i for i in before if before[i] is not None and after.get(i) is not None]
    a = [int(bool(before[i])) for i in ids]
    b = [int(bool(after[i])) for i in ids]
    n01, n10 = _discordance(a, b)
    cell: dict[str, Any] = {"n": len(ids), "n01": n01, "n10": n10, "wins": n01, "losses": n10}
    if not ids:
        return {**cell, "rate_before": None, "rate_after": None, "lift": None, "cohens_h": None, "mcnemar": None, "bootstrap": None,
                "detectable_lift": None, "detectable_lift_alpha": None, "length_controlled": None}
    rate_before, rate_after = sum(a) / len(a), sum(b) / len(b)
    test = mcnemar(n01, n10)
    boot = fast_paired_bootstrap(a, b, samples=bootstrap_samples, seed=seed, confidence=confidence)
    return {
        **cell,
        "rate_before": rate_before,
        "rate_after": rate_after,
        "lift": rate_after - rate_before,
        "cohens_h": cohens_h(rate_before, rate_after),
        "mcnemar": {"statistic": test.statistic, "p_value": test.p_value, "method": test.method},
        "bootstrap": {"low": boot.low, "high": boot.high, "samples": boot.samples, "seed": boot.seed, "confidence": boot.confidence},
        "length_controlled": None if ratio is None else controlled_cell(ids, a, b, ratio),
    }


def _ratio(before: Mapping[str, int], after: Mapping[str, int]) -> Callable[[str], float]:
    return lambda item_id: log_length_ratio(before[item_id], after[item_id])


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


def compare_variants(
    verdicts: Verdicts, pairs: Sequence[tuple[str, str]], *, q: float, bootstrap_samples: int, seed: int, confidence: float,
    families: Mapping[str, Sequence[tuple[str, str]]] | None = None, words: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every (pair, criterion) comparison with BH-adjusted p-values; pairs with a missing side are skipped.

    Benjamini–Hochberg runs within each family (``family_of``); ``families=None`` puts every
    comparison in one. ``words[variant][item_id]`` (response word counts) adds the length-matched view.

    Returns ``(comparisons, skipped)``; ``skipped`` names each pair left out and why.
    """
    comparisons: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for before, after in pairs:
        absent = [name for name in (before, after) if name not in verdicts]
        if absent:
            skipped.append({"before": before, "after": after, "reason": f"not evaluated: {', '.join(absent)}"})
            continue
        ratio = None if words is None else _ratio(words[before], words[after])
        family = family_of((before, after), families)
        for name in CRITERION_NAMES:
            column_before = {i: v[name] for i, v in verdicts[before].items()}
            column_after = {i: v[name] for i, v in verdicts[after].items()}
            cell_seed = row_seed(seed, before, after, name, bits=64)  # 64 bits: the pinned bootstrap intervals
            cell = compare_cell(column_before, column_after, bootstrap_samples=bootstrap_samples, seed=cell_seed, confidence=confidence,
                                ratio=ratio)
            comparisons.append({"before": before, "after": after, "criterion": name, "family": family, **cell})
    for family in dict.fromkeys(c["family"] for c in comparisons):
        adjust_family([c for c in comparisons if c["family"] == family], q)
    for cell in comparisons:
        for key, default in (("p_adjusted", None), ("significant", False), ("detectable_lift", None), ("detectable_lift_alpha", None)):
            cell.setdefault(key, default)
    return comparisons, skipped


def variant_lengths(responses: Mapping[str, Mapping[str, EvalResponse]]) -> dict[str, dict[str, Any]]:
    """Mean and median response length per variant, in words and (where generated here) tokens."""
    return {
        variant: response_lengths([word_count(r.response) for r in by_item.values()], [r.num_tokens for r in by_item.values()])
        for variant, by_item in responses.items()
    }


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
    families: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """The scored part of ``results.json`` (the caller adds settings, provenance and skipped variants).

    ``families`` names the Benjamini–Hochberg families (``compare_variants``); None: one family.

    Raises:
        ValueError: a variant lacks a response for some item.
    """
    verdicts = score_variants(items, responses)
    item_ids = [item.id for item in items]
    cells, pooled = category_cells(items, min_category_items)
    words = {variant: {i: word_count(r.response) for i, r in by_item.items()} for variant, by_item in responses.items()}
    comparisons, skipped_pairs = compare_variants(
        verdicts, pairs, q=q, bootstrap_samples=bootstrap_samples, seed=seed, confidence=confidence, families=families, words=words
    )
    compare = partial(compare_variants, q=q, bootstrap_samples=bootstrap_samples, seed=seed, confidence=confidence, families=families)
    slices = slice_results(items, verdicts, words, pairs, confidence=confidence, compare=compare, rates=rate_table)
    named = {family_of(pair, families): [] for pair in pairs}
    for pair in pairs:
        named[family_of(pair, families)].append(f"{pair[0]}->{pair[1]}")
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
        **({"slices": slices} if slices else {}),
        "skipped_comparisons": skipped_pairs,
        "flips": flipped_items(verdicts, pairs),
        "lengths": variant_lengths(responses),
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

