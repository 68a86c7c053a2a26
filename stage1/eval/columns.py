"""Verdicts as compact columns: what the rates, comparisons, flips and lengths are computed from.

One small integer per (variant, item, criterion) (``PASS``, ``FAIL`` or ``NOT_APPLICABLE``) and one
word count and token count per (variant, item), in numpy arrays indexed by the item's position. A
sweep of 100 variants × 1,000 items is about 2 MB of columns, where dicts of verdicts and the
responses themselves were hundreds: ``stage1 score`` keeps only these while it reads a responses
file, so its memory does not grow with the rows' text. Every figure is computed here with Python
integers from the same counts as before, so results.json does not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stage1.core.criteria import CRITERION_NAMES, Verdict
from stage1.core.lengths import response_lengths
from stage1.core.stats import wilson_interval

PASS, FAIL, NOT_APPLICABLE = 1, 0, -1
UNKNOWN_TOKENS = -1  # num_tokens not given
VERDICT_DTYPE = np.int8
COUNT_DTYPE = np.int64


def encode_verdicts(verdicts: Mapping[str, Verdict] | None) -> list[int]:
    """One response's verdicts in ``CRITERION_NAMES`` order (None for the whole row: every one n/a)."""
    if verdicts is None:
        return [NOT_APPLICABLE] * len(CRITERION_NAMES)
    return [NOT_APPLICABLE if verdicts[name] is None else int(bool(verdicts[name])) for name in CRITERION_NAMES]


@dataclass
class VerdictColumns:
    """Per variant (in the order the variants came): ``verdicts`` (items × criteria), ``words`` and
    ``tokens`` (items), row ``k`` being ``item_ids[k]``. ``words`` is None where lengths are not known
    (then comparisons have no length control and there are no lengths)."""

    item_ids: list[str]
    verdicts: dict[str, np.ndarray]
    words: dict[str, np.ndarray] | None = None
    tokens: dict[str, np.ndarray] | None = None

    @property
    def variants(self) -> list[str]:
        return list(self.verdicts)

    def take(self, rows: Sequence[int]) -> VerdictColumns:
        """The columns of the items at ``rows`` (positions), in that order."""
        index = np.asarray(rows, dtype=np.intp)

        def pick(columns: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
            return None if columns is None else {name: column[index] for name, column in columns.items()}

        return VerdictColumns([self.item_ids[k] for k in index.tolist()], pick(self.verdicts), pick(self.words), pick(self.tokens))


def from_verdicts(verdicts: Mapping[str, Mapping[str, Mapping[str, Verdict]]], item_ids: Sequence[str], *,
                  words: Mapping[str, Mapping[str, int]] | None = None,
                  tokens: Mapping[str, Mapping[str, int | None]] | None = None) -> VerdictColumns:
    """Columns of ``verdicts[variant][item_id][criterion]`` over ``item_ids`` (an item a variant lacks: n/a)."""
    encoded = {variant: np.array([encode_verdicts(by_item.get(i)) for i in item_ids], dtype=VERDICT_DTYPE).reshape(len(item_ids), -1)
               for variant, by_item in verdicts.items()}
    counted = None if words is None else {v: np.array([words[v][i] for i in item_ids], dtype=COUNT_DTYPE) for v in verdicts}
    known = None if tokens is None else {
        v: np.array([UNKNOWN_TOKENS if tokens[v][i] is None else tokens[v][i] for i in item_ids], dtype=COUNT_DTYPE) for v in verdicts}
    return VerdictColumns(list(item_ids), encoded, counted, known)


def rate_from_counts(successes: int, n: int, not_applicable: int, confidence: float) -> dict[str, Any]:
    """Successes, applicable n, n/a count, rate (None when nothing applies) and Wilson interval."""
    low, high = wilson_interval(successes, n, confidence)
    return {"successes": successes, "n": n, "not_applicable": not_applicable, "rate": successes / n if n else None,
            "low": low, "high": high}


def column_rate(column: np.ndarray, confidence: float) -> dict[str, Any]:
    """``rate_from_counts`` of one criterion's column."""
    successes, n = int(np.count_nonzero(column == PASS)), int(np.count_nonzero(column != NOT_APPLICABLE))
    return rate_from_counts(successes, n, len(column) - n, confidence)


def column_rates(columns: VerdictColumns, confidence: float) -> dict[str, dict[str, Any]]:
    """``{variant: {criterion: rate cell}}`` over the columns' items (``take`` for a subset)."""
    return {variant: {name: column_rate(verdicts[:, k], confidence) for k, name in enumerate(CRITERION_NAMES)}
            for variant, verdicts in columns.verdicts.items()}


def column_flips(columns: VerdictColumns, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """For each compared pair and criterion, the item ids that went fail→pass (wins) and pass→fail (losses)."""
    flips = []
    ids = columns.item_ids
    for before, after in pairs:
        if before not in columns.verdicts or after not in columns.verdicts:
            continue
        for k, name in enumerate(CRITERION_NAMES):
            old, new = columns.verdicts[before][:, k], columns.verdicts[after][:, k]
            changed = (old != NOT_APPLICABLE) & (new != NOT_APPLICABLE) & (old != new)
            wins = np.flatnonzero(changed & (new == PASS)).tolist()
            losses = np.flatnonzero(changed & (new == FAIL)).tolist()
            flips.append({"before": before, "after": after, "criterion": name, "wins": [ids[k] for k in wins],
                          "losses": [ids[k] for k in losses]})
    return flips


def column_lengths(columns: VerdictColumns) -> dict[str, dict[str, Any]]:
    """Mean and median response length per variant, in words and (where every response counted them) tokens."""
    if columns.words is None or columns.tokens is None:
        return {}
    lengths = {}
    for variant, words in columns.words.items():
        tokens = [None if t == UNKNOWN_TOKENS else t for t in columns.tokens[variant].tolist()]
        lengths[variant] = response_lengths(words.tolist(), tokens)
    return lengths
