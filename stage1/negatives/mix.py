"""Which kinds of negative an example gets: the declared mix, honoured, without repeats in one example.

Drawing ``k`` kinds one after another without replacement flattens the mix (with ``k = 5`` and
five kinds every example gets every kind, whatever the weights). Here each example selects kind
``i`` with inclusion probability ``pi_i = k * w_i`` exactly, by systematic sampling (Madow, 1949):
lay the ``pi_i`` end to end in a freshly shuffled order, draw one ``u`` in ``[0, 1)``, and take
the kinds whose interval holds one of ``u, u + 1, ..., u + k - 1``. An interval no longer than 1
holds at most one of those points, so a kind repeats within an example only when its weight
makes that unavoidable (``w_i > 1/k``). Over many examples each kind's share of all draws is its
weight.

That is the plan. What is produced can fall short of it: a kind that does not apply to an example
(nothing factual to change) is not made there. ``ShareKeeper`` makes the shortfall up on later
examples: it tracks each kind's deficit, ``w_i * produced - produced_i``, and proposes to try the
kinds at least one negative behind (most behind first) in place of the planned kind furthest
ahead; the maker builds the planned kind when none of them applies. So the produced shares follow
the weights wherever enough examples admit each kind, and the plan is unchanged where all apply.

Pure: ``random.Random`` passed in.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence


class KindPlanner:
    """Plans the kinds of each example; weights are checked once, here.

    Raises:
        ValueError: weights that are negative or do not sum to 1, or a bad ``per_example``.
    """

    def __init__(self, kinds: Sequence[str], weights: Sequence[float], per_example: int):
        if len(kinds) != len(weights) or not kinds:
            raise ValueError("kinds and weights must be non-empty and of the same length")
        if per_example < 1:
            raise ValueError(f"per_example must be at least 1, got {per_example}")
        if any(w < 0 for w in weights) or not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
            raise ValueError(f"weights must be non-negative and sum to 1, got {list(weights)}")
        self.per_example = per_example
        # (kind, pi_i = k * w_i) for the kinds that can be drawn at all
        self._intervals = [(kind, per_example * weight) for kind, weight in zip(kinds, weights) if weight > 0]

    def plan(self, rng: random.Random) -> list[str]:
        """``per_example`` kinds for one example (a kind appears twice only if its weight exceeds 1/k)."""
        intervals = list(self._intervals)
        rng.shuffle(intervals)
        point = rng.random()
        chosen: list[str] = []
        end = 0.0
        for kind, length in intervals:
            end += length
            while point < end and len(chosen) < self.per_example:
                chosen.append(kind)
                point += 1.0
        # Rounding can leave the last point a hair past the final interval; it belongs to the last kind.
        while len(chosen) < self.per_example:
            chosen.append(intervals[-1][0])
        return chosen


class ShareKeeper:
    """Keeps the produced kinds on the declared weights when planned kinds do not apply (see above)."""

    def __init__(self, kinds: Sequence[str], weights: Sequence[float]):
        self._weights = {kind: weight for kind, weight in zip(kinds, weights) if weight > 0}
        self._produced: Counter[str] = Counter()
        self._total = 0

    def add(self, kind: str) -> None:
        """One negative of ``kind`` was produced."""
        self._produced[kind] += 1
        self._total += 1

    def make_up(self, plan: Sequence[str]) -> tuple[int, list[str]] | None:
        """``(position, kinds)``: try ``kinds`` in turn in place of ``plan[position]``; None when nothing is owed.

        ``kinds`` are those at least one negative behind and not in the plan, most behind first;
        the position is the planned kind furthest ahead, and only one ahead of its share is given up.
        """
        deficits = {kind: weight * self._total - self._produced[kind] for kind, weight in self._weights.items()}
        behind = sorted((kind for kind, deficit in deficits.items() if deficit >= 1.0 and kind not in plan), key=deficits.__getitem__, reverse=True)
        if not behind:
            return None
        position = min(range(len(plan)), key=lambda index: deficits.get(plan[index], 0.0))
        return (position, behind) if deficits.get(plan[position], 0.0) < 0 else None


def plan_kinds(kinds: Sequence[str], weights: Sequence[float], per_example: int, rng: random.Random) -> list[str]:
    """One example's kinds; see ``KindPlanner`` (which checks the weights once for many examples)."""
    return KindPlanner(kinds, weights, per_example).plan(rng)
