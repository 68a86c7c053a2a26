"""Per-slice rates and paired comparisons: items marked with a ``slice`` (such as ``new_wording``,
instructions phrased unlike the training templates) reported on their own, beside the rest.

A model that learned the behaviour does about as well on new wordings of the same facts and tasks
as on the familiar ones; one that memorised the templates does worse there. Each slice gets the
same rate table and the same paired statistics as the whole set (its comparisons are corrected
within the slice, family by family), and so does ``rest``, the items of no slice.

Pure: verdict columns and the statistics of ``summary``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stage1.core.eval_items import EvalItem
from stage1.eval.columns import VerdictColumns, column_rates

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
    columns: VerdictColumns,
    pairs: Sequence[tuple[str, str]],
    *,
    confidence: float,
    compare: Callable[[VerdictColumns, Sequence[tuple[str, str]]], tuple[list[dict[str, Any]], Any]],
) -> dict[str, dict[str, Any]]:
    """Per slice: ``size``, ``rates`` and ``comparisons`` (``compare(columns, pairs)`` on the slice's
    items only), from the verdict columns of ``items``."""
    position = {item_id: k for k, item_id in enumerate(columns.item_ids)}
    out: dict[str, dict[str, Any]] = {}
    for name, ids in slice_cells(items).items():
        sub = columns.take([position[i] for i in ids])
        comparisons, _ = compare(sub, pairs)
        out[name] = {"size": len(ids), "rates": column_rates(sub, confidence), "comparisons": comparisons}
    return out
