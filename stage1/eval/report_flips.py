"""Which flipped items ``report.md`` quotes: the rows of its flipped-items section, and the outcomes
those rows read (``stage1 score`` keeps only those of ``items``, so its memory stays flat)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_FLIPS_SHOWN = 10


def shown_flips(results: dict[str, Any], max_shown: int = MAX_FLIPS_SHOWN) -> Iterator[tuple[dict[str, Any], list[tuple[str, str]]]]:
    """Each flip with a win or a loss, and the ``(outcome, item_id)`` rows the report shows of it."""
    for flip in results["flips"]:
        if flip["wins"] or flip["losses"]:
            yield flip, [(outcome, item_id) for outcome, ids in (("win", flip["wins"]), ("loss", flip["losses"])) for item_id in ids[:max_shown]]


def shown_outcomes(results: dict[str, Any], max_shown: int = MAX_FLIPS_SHOWN) -> dict[str, set[str]]:
    """``{item_id: variants}``: the outcomes the flipped-items section quotes (all it reads of ``items``)."""
    shown: dict[str, set[str]] = {}
    for flip, rows in shown_flips(results, max_shown):
        for _, item_id in rows:
            shown.setdefault(item_id, set()).update((flip["before"], flip["after"]))
    return shown
