"""Seeds derived from what a thing is, never from where it happens to be processed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def row_seed(*parts: object, bits: int = 63) -> int:
    """A seed of ``bits`` bits from its parts, e.g. ``(seed, instruction_id, sample)``.

    A hash, not ``seed + index``: neighbouring rows get unrelated streams, and the value depends only
    on what the row is, never on which batch it is decoded in, nor on Python's hash seed. 63 bits
    fit every generator (torch takes signed 64-bit seeds); the statistics' bootstrap cells use all 64.
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


def sample_keys(ids: Iterable[str], per_id: int) -> list[tuple[str, int]]:
    """``(id, sample number)`` of every sample when each id is sampled ``per_id`` times, in order: what
    a generated row is (SFT data's responses, the policy's samples), whatever batch decodes it."""
    return [(row_id, number) for row_id in ids for number in range(per_id)]


def sample_seeds(keys: Sequence[tuple[str, int]], *stream: object) -> list[int]:
    """One sampling seed per sample from what it is (``row_seed(*stream, id, number)``), so a resumed
    run draws the same text; ``stream`` tells the stages' samples apart (the seed, and a name or a seed more)."""
    return [row_seed(*stream, row_id, number) for row_id, number in keys]
