"""Keys for comparing texts loosely: duplicates, instruction groups and near-duplicate leakage.

One normalisation for all three, so "the same instruction" means the same thing when SFT data
is de-duplicated, when splits are grouped and when the leakage gate looks for evaluation items.

Normalised: Unicode NFKC, case-folded, punctuation (Unicode category P*) replaced by a space,
whitespace collapsed. Symbols are kept (``+``, ``=``, ``%``, ``$``, ``°``), so ``2 + 3`` and
``2 = 3`` stay different; the hyphen-minus is punctuation, so ``5 - 3`` and ``5 3`` collide,
which is why arithmetic instructions spell the operator out ("5 minus 3").

Pure: strings only.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_ASCII_PUNCTUATION = {ord(ch): " " for ch in map(chr, range(128)) if unicodedata.category(ch).startswith("P")}


@lru_cache(maxsize=4096)
def _is_punctuation(character: str) -> bool:
    return unicodedata.category(character).startswith("P")


def dedup_key(text: str) -> str:
    """The text with case, whitespace and punctuation differences removed.

    >>> dedup_key("  What is the CAPITAL of France?? ")
    'what is the capital of france'
    """
    if text.isascii():
        # Fast path for the common case: ASCII is already NFKC, casefold is lower, punctuation by table.
        return " ".join(text.lower().translate(_ASCII_PUNCTUATION).split())
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return " ".join(folded.translate(_ASCII_PUNCTUATION).split())
    return " ".join("".join(" " if _is_punctuation(ch) else ch for ch in folded).split())



def key_words(text: str) -> list[str]:
    """The words of ``dedup_key(text)``."""
    return dedup_key(text).split()


def word_ngrams(words: list[str], n: int) -> frozenset[tuple[str, ...]]:
    """Every run of ``n`` consecutive words; empty when there are fewer than ``n`` words."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def contains_words(haystack: str, needle: str) -> bool:
    """True when ``needle``'s normalised words occur consecutively, as whole words, in ``haystack``.

    ``"No."`` is contained in ``"I have no idea"``; ``"cat"`` is not contained in ``"concatenate"``.
    An empty needle is contained nowhere (it would otherwise be contained everywhere).
    """
    target = dedup_key(needle)
    if not target:
        return False
    return f" {target} " in f" {dedup_key(haystack)} "
