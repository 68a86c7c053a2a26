"""Row seeds: the documented hash of what a row is, at the number of bits asked for."""

from __future__ import annotations

import hashlib

import pytest

from stage1.core.seeds import row_seed


def _top_bits(text: str, bits: int) -> int:
    """The first ``bits`` bits of the SHA-256 digest of ``text``, big-endian."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> (64 - bits)


def test_a_seed_is_the_top_bits_of_the_sha256_of_its_parts_joined_by_colons():
    assert row_seed(0, "q1", 0) == _top_bits("0:q1:0", 63) == 1272777083782983648
    assert row_seed(0, "q1", 0, bits=64) == _top_bits("0:q1:0", 64) == 2545554167565967297
    assert row_seed("a", bits=8) == 202
    assert row_seed(0, "q1", 0) == row_seed(0, "q1", 0, bits=64) >> 1  # the default, 63 bits, fits torch


def test_the_seed_depends_on_every_part_and_its_order():
    seeds = {row_seed(0, "q1", 0), row_seed(0, "q1", 1), row_seed(1, "q1", 0), row_seed(0, "q2", 0), row_seed("q1", 0, 0)}
    assert len(seeds) == 5


def test_a_non_ascii_part_is_hashed_as_utf8():
    assert row_seed("kategorie ü", bits=64) == _top_bits("kategorie ü", 64)


@pytest.mark.parametrize("bits", [1, 2, 63, 64])
def test_a_seed_fits_its_bits(bits):
    values = [row_seed(index, bits=bits) for index in range(64)]
    assert all(0 <= value < 2**bits for value in values)
    assert max(values) >= 2 ** (bits - 1)  # the top bit is used: 64 seeds all below half would be a 2^-64 event


@pytest.mark.parametrize("bits", [0, 65, -1])
def test_bits_outside_1_to_64_are_refused(bits):
    with pytest.raises(ValueError, match=rf"^bits must be in \[1, 64\], got {bits}$"):
        row_seed(0, bits=bits)
