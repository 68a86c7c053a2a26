"""Donors: other examples' text that off-topic and runaway negatives borrow, and how often each is borrowed.

``DonorPool`` is a seeded reservoir of at most ``size`` examples per category, numbered once
frozen, with no two donors sharing an answer after ``dedup_key``. ``DonorUses`` counts borrowings
per donor and keeps, per category, the list of donors still under the cap, so a draw is exact and
O(1): it never misses a free donor by chance and answers None at once when every donor is used up.

Pure: records, strings and ``random.Random``.
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Iterable

from stage1.core.records import SFTExample
from stage1.core.text_keys import dedup_key


class DonorPool:
    """A seeded reservoir of answers per category, for off-topic and runaway negatives.

    After ``freeze`` every donor has a number (its slot) and no two donors share an answer after
    ``dedup_key``, so counting uses per slot counts uses per string.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self._rng = random.Random(f"{seed}:donors")
        self._seen: Counter[str] = Counter()
        self._reservoirs: dict[str, list[SFTExample]] = {}
        self.donors: list[SFTExample] = []
        self.by_category: dict[str, list[int]] = {}
        self.shares: dict[str, float] = {}  # each category's balanced share of off-topic pairs (see balanced_shares)
        self.accept: dict[str, float] = {}  # the probability an example of each category takes an off-topic negative

    def offer(self, example: SFTExample) -> None:
        pool = self._reservoirs.setdefault(example.category, [])
        self._seen[example.category] += 1
        if len(pool) < self.size:
            pool.append(example)
            return
        slot = self._rng.randrange(self._seen[example.category])
        if slot < self.size:
            pool[slot] = example

    def freeze(self) -> DonorPool:
        """Number the donors, dropping answers already held (in sorted category order)."""
        answers: set[str] = set()
        for category in sorted(self._reservoirs):
            for example in self._reservoirs[category]:
                key = dedup_key(example.response)
                if key in answers:
                    continue
                answers.add(key)
                self.by_category.setdefault(category, []).append(len(self.donors))
                self.donors.append(example)
        self._reservoirs = {}
        self.shares = balanced_shares(self._seen)
        self.accept = {category: accept_share(self.shares, self._seen, category) for category in self._seen}
        return self

    @classmethod
    def from_examples(cls, examples: Iterable[SFTExample], size: int, seed: int) -> DonorPool:
        pool = cls(size, seed)
        for example in examples:
            # A request that should be declined lends nothing: its answer is a refusal (an off-topic
            # negative made of it would be a refusal under another name) and its instruction is
            # not one a runaway should write.
            if not example.refusal_expected:
                pool.offer(example)
        return pool.freeze()


def balanced_shares(counts: Counter[str]) -> dict[str, float]:
    """Each category's weight in off-topic pairs: its share of the pool, capped at ``1 / k``.

    Why: an off-topic rejected is another category's answer, so when one category dominates a pool
    (the larger shipped pool is 65% arithmetic) the chosen answers open like that category and the
    rejected ones do not, and a reader of openings alone separates them (0.86 on that pool). With
    the categories of the off-topic pairs' chosen answers weighted ``w_c = min(p_c, 1/k)``
    (``accept_share``) and donors drawn with the same weights, both sides of the pairs come from
    nearly the same mix of categories. Pure.
    """
    total = sum(counts.values())
    if not total:
        return {}
    cap = 1.0 / len(counts)
    return {category: min(count / total, cap) for category, count in sorted(counts.items())}


def accept_share(shares: dict[str, float], counts: Counter[str], category: str) -> float:
    """The probability an example of ``category`` takes an off-topic negative: ``w_c / p_c`` (1 for a
    category at or under its cap)."""
    total = sum(counts.values())
    if not total or category not in shares or not counts[category]:
        return 1.0
    return min(1.0, shares[category] * total / counts[category])


class DonorUses:
    """How often each donor has been borrowed; only donors used fewer than ``limit`` times are drawn."""

    def __init__(self, pool: DonorPool, limit: int):
        self.pool = pool
        self.limit = limit
        self.uses = array("I", [0]) * len(pool.donors)
        self._categories = sorted(pool.by_category)
        self._free = {category: list(pool.by_category[category]) for category in self._categories}
        self._category_of = [""] * len(pool.donors)
        self._position = array("I", [0]) * len(pool.donors)  # where each donor sits in its category's free list
        for category, slots in self._free.items():
            for position, slot in enumerate(slots):
                self._category_of[slot] = category
                self._position[slot] = position

    def draw(self, rng: random.Random, other_than: str | None = None, weighted: bool = False) -> int | None:
        """A free donor's slot: a category (``other_than`` excluded) drawn uniformly, or with the
        pool's balanced shares when ``weighted``, then a donor in it."""
        categories = [category for category in self._categories if category != other_than and self._free[category]]
        if not categories:
            return None
        if weighted:  # every category with donors has a share above 0
            category = rng.choices(categories, [self.pool.shares[c] for c in categories])[0]
        else:
            category = rng.choice(categories)
        free = self._free[category]
        return free[rng.randrange(len(free))]

    def draw_within(self, rng: random.Random, category: str) -> int | None:
        """A free donor's slot of ``category`` itself (``negatives.off_topic_from: same_category``), or None."""
        free = self._free.get(category)
        return free[rng.randrange(len(free))] if free else None

    def use(self, slot: int) -> None:
        self.uses[slot] += 1
        if self.uses[slot] == self.limit:  # swap it out of its free list: O(1)
            free = self._free[self._category_of[slot]]
            position, last = self._position[slot], free[-1]
            free[position], self._position[last] = last, position
            free.pop()
