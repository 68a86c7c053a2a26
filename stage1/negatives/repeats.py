"""How often a rejected string has been used, in fixed memory: a count-min sketch.

Strings built from the chosen answer (a flipped "Yes.", an answer without its ``END``) or from
borrowed text repeat whenever answers repeat, and their variety is unbounded, so they cannot be
numbered like the templates. Each string is hashed (BLAKE2b, the same on every run and machine,
unlike ``hash``) to one counter in each of ``ROWS`` rows of ``WIDTH`` counters; its count is the
smallest of its counters, which is never below the true count, so ``full`` never lets a string
past the limit. A string is refused early only when both its counters are shared with strings
used more, roughly ``(strings at the cap / WIDTH) ** 2`` per check. Conservative update (only the
counters at the minimum are raised) keeps shared counters low. Measured with ``bench.data``'s
100,000 examples (69,334 distinct strings, 3,319 of them at the cap of 10): 7 of 272,047 checks
refused a string that was below the cap. The table is 2 x 2^19 counters (4 MiB) whatever the stream
length; far past a few million strings, counters fill and early refusals grow.

Pure: strings only.
"""

from __future__ import annotations

from array import array
from hashlib import blake2b

ROWS = 2
WIDTH = 1 << 19
_MASK = WIDTH - 1


def cells(text: str) -> tuple[int, int]:
    """The counter of ``text`` in each row."""
    digest = int.from_bytes(blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    return digest & _MASK, (digest >> 32) & _MASK


class RepeatCounter:
    """Counts uses of strings; ``count`` is an upper bound of the true count, exact unless hashes collide."""

    def __init__(self) -> None:
        self._rows = [array("I", [0]) * WIDTH for _ in range(ROWS)]

    def count(self, where: tuple[int, int]) -> int:
        first, second = self._rows
        return min(first[where[0]], second[where[1]])

    def add(self, where: tuple[int, int]) -> None:
        """Raise the counters at the minimum (conservative update: the bound holds, collisions add less)."""
        first, second = self._rows
        low = min(first[where[0]], second[where[1]])
        if first[where[0]] == low:
            first[where[0]] += 1
        if second[where[1]] == low:
            second[where[1]] += 1
