"""Per-slice rates and paired comparisons: items marked with a ``slice`` (such as ``new_wording``,
instructions phrased unlike the training templates) reported on their own, beside the rest.

A model that learned the behaviour does about as well on new wordings of the same facts and tasks
as on the familiar ones; one that memorised the templates does worse there. Each slice gets the
same rate table and the same paired statistics as the whole set (its comparisons are corrected
within the slice, family by family), and so does ``rest``, the items of no slice.

Pure: verdict tables and the statistics of ``summary``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stage1.core.eval_items import EvalItem

REST = "rest"  # the items that belong to no slice


def slice_cells(items: Sequence[EvalItem]) -> dict[str, list[str]]:
    """``{slice: item_ids}`` for every named slice, then ``rest``; empty when no item has a slice."""
    cells: dict[str, list[str]] = {}
    for item in items:
        if item.slice is not None:
            cells.setdefault(item.slice, []).append(item.id)
    if not cells:
        return {}
    rest = [item.id for item in items if item.slice is None]
    return dict(sorted(cells.items())) | ({REST: rest} if rest else {})


def slice_results(
    items: Sequence[EvalItem],
    verdicts: Mapping[str, Mapping[str, Mapping[str, Any]]],
    words: Mapping[str, Mapping[str, int]],
    pairs: Sequence[tuple[str, str]],
    *,
    confidence: float,
    compare: Any,
    rates: Any,
) -> dict[str, dict[str, Any]]:
    """Per slice: ``size``, ``rates`` (``rates(verdicts, ids, confidence)``) and ``comparisons``
    (``compare(verdicts, pairs, words=...)`` on the slice's items only)."""
    out: dict[str, dict[str, Any]] = {}
    for name, ids in slice_cells(items).items():
        keep = set(ids)
        sub_verdicts = {variant: {i: v for i, v in by_item.items() if i in keep} for variant, by_item in verdicts.items()}
        sub_words = {variant: {i: n for i, n in by_item.items() if i in keep} for variant, by_item in words.items()}
        comparisons, _ = compare(sub_verdicts, pairs, words=sub_words)
        out[name] = {"size": len(ids), "rates": rates(verdicts, ids, confidence), "comparisons": comparisons}
    return out
