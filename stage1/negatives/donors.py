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
        return self

    @classmethod
    def from_examples(cls, examples: Iterable[SFTExample], size: int, seed: int) -> DonorPool:
        pool = cls(size, seed)
        for example in examples:
            pool.offer(example)
        return pool.freeze()


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

    def draw(self, rng: random.Random, other_than: str | None = None) -> int | None:
        """A free donor's slot: a category drawn uniformly (``other_than`` excluded), then a donor in it."""
        categories = [category for category in self._categories if category != other_than and self._free[category]]
        if not categories:
            return None
        free = self._free[rng.choice(categories)]
        return free[rng.randrange(len(free))]

    def use(self, slot: int) -> None:
        self.uses[slot] += 1
        if self.uses[slot] == self.limit:  # swap it out of its free list: O(1)
            free = self._free[self._category_of[slot]]
            position, last = self._position[slot], free[-1]
            free[position], self._position[last] = last, position
            free.pop()
