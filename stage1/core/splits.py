"""Splits grouped by normalised instruction: no instruction is on both sides.

Splitting rows (examples, pairs) instead of instructions puts the same instruction, with a
different response or a different negative, into train and held-out at once, and the held-out
numbers then measure memory. Here the unit of assignment is the group key
(``text_keys.dedup_key`` of the instruction), so duplicates that differ only in case, spacing or
punctuation land together.

Deterministic under the seed and independent of the row order: the sorted distinct keys are
shuffled by ``random.Random(seed)`` and the first ``round(fraction * groups)`` go to held-out.

Pure: no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from stage1.core.text_keys import dedup_key

T = TypeVar("T")


def heldout_groups(keys: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The group keys that go to held-out.

    At least one group is held out when ``fraction > 0`` and there are at least two groups, and
    at least one stays in train; ``fraction == 0`` holds out nothing.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    distinct = sorted(set(keys))
    if fraction == 0.0 or len(distinct) < 2:
        return set()
    count = min(max(1, round(fraction * len(distinct))), len(distinct) - 1)
    random.Random(seed).shuffle(distinct)
    return set(distinct[:count])


def split_by_instruction(
    rows: Sequence[T], instruction_of: Callable[[T], str], fraction: float, seed: int
) -> tuple[list[T], list[T]]:
    """``(train, heldout)`` with every row of an instruction group on the same side, order kept.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``.
    """
    keys = [dedup_key(instruction_of(row)) for row in rows]
    held = heldout_groups(keys, fraction, seed)
    train = [row for row, key in zip(rows, keys) if key not in held]
    heldout = [row for row, key in zip(rows, keys) if key in held]
    return train, heldout
