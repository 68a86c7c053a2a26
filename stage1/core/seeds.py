"""Seeds derived from what a thing is, never from where it happens to be processed."""

from __future__ import annotations

import hashlib


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
