"""Keys for comparing texts loosely: duplicates, instruction groups and near-duplicate leakage.

One normalisation for all three, so "the same instruction" means the same thing when SFT data
is de-duplicated, when splits are grouped and when the leakage gate looks for evaluation items.

Normalised: Unicode NFKC, case-folded, punctuation (Unicode category P*) replaced by a space,
whitespace collapsed. Symbols are kept (``+``, ``=``, ``%``, ``$``, ``°``), so ``2 + 3`` and
``2 = 3`` stay different. Punctuation that changes what a token means is kept as a mark, the same
marks ``criteria.normalise_for_matching`` uses: a decimal point between digits (``4.5`` →
``4·5``, not ``4 5``), a minus sign before a number (``-5`` → ``⁻5``, not ``5``), ``#`` and ``++``
after a word (``C#`` → ``c♯``, ``C++`` → ``c⊕⊕``, neither is ``c``). A hyphen between words or
numbers is still punctuation, so ``5 - 3`` and ``5 3`` collide, which is why arithmetic
instructions spell the operator out ("5 minus 3").

Text that only looks the same, or only looks empty, gets the same key: the keys are computed on
``loose_text``, which removes default-ignorable and format characters (zero-width spaces and
joiners, the soft hyphen, bidi controls, variation selectors, tags) and maps letters that look like
an ASCII letter to it (Cyrillic ``а``, Greek ``ο``: Unicode's confusables data, ``confusables.py``).
A zero-width space or a Cyrillic look-alike inside an evaluation instruction no longer hides it from
the leakage gate, and a text of invisible characters only is blank (``is_blank``). This applies to
the comparison key only; the text written to any file is never changed.

Pure: strings only.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from stage1.core.confusables import CONFUSABLE_LETTERS

#: Marks that stand for kept symbols (also used by ``criteria.normalise_for_matching``). None is a word
#: character or punctuation once marked, so no word contains one by chance and none is split off.
DECIMAL_MARK = "\u00b7"  # '·' for the point in 4.5
SIGN_MARK = "\u207b"  # '⁻' for the minus in -5
SHARP_MARK = "\u266f"  # '♯' for the '#' in C#
PLUS_MARK = "\u2295"  # '⊕', twice, for the '++' in C++

_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_SIGN = re.compile(r"(?<![\w\u00b7])[-\u2212](?=\d)")  # a minus sign, not the hyphen in '3-5' or 'well-known'
_SHARP = re.compile(r"(?<=\w)#")
_PLUS_PLUS = re.compile(r"(?<=\w)\+\+")

_ASCII_PUNCTUATION = {ord(ch): " " for ch in map(chr, range(128)) if unicodedata.category(ch).startswith("P")}

#: Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt) and every format (Cf)
#: character's: drawn as nothing. A test checks the Cf ranges against ``unicodedata``.
INVISIBLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F),
    (0x0890, 0x0891), (0x08E2, 0x08E2), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F),
    (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
# Sets, so that the common text (nothing invisible, no look-alike) costs one C-level isdisjoint each.
_INVISIBLE = frozenset(chr(code) for low, high in INVISIBLE_RANGES for code in range(low, high + 1))
_LOOK_ALIKES = frozenset(map(chr, CONFUSABLE_LETTERS))


def loose_text(text: str, *, casefold: bool = False) -> str:
    """``text`` as it looks: NFKC, invisible characters removed, look-alike letters mapped to ASCII.

    Case is kept unless ``casefold`` (the leakage gate reads capitals as names); folded first, then
    mapped, so Greek capital iota is ``i`` as its small letter is (unfolded, it looks like ``l``).
    ASCII text is returned as it is (folded when asked).

    >>> loose_text("Wh\u200bat is the c\u0430pital?")
    'What is the capital?'
    """
    if text.isascii():
        return text.casefold() if casefold else text
    visible = unicodedata.normalize("NFKC", text)
    if not _INVISIBLE.isdisjoint(visible):
        visible = "".join(ch for ch in visible if ch not in _INVISIBLE)
    if casefold:
        visible = visible.casefold()
    return visible if _LOOK_ALIKES.isdisjoint(visible) else visible.translate(CONFUSABLE_LETTERS)


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: only whitespace and invisible characters (or nothing)."""
    return not loose_text(text).strip()


@lru_cache(maxsize=4096)
def _is_punctuation(character: str) -> bool:
    # The decimal mark is itself punctuation (Po); it is kept like a symbol.
    return character != DECIMAL_MARK and unicodedata.category(character).startswith("P")


def mark_kept_symbols(text: str) -> str:
    """Replace the meaning-changing punctuation with its mark (the ``in`` tests skip most texts).

    Shared with ``criteria.normalise_for_matching``, so data keys and scoring keep the same symbols.
    """
    if "." in text:
        text = _DECIMAL_POINT.sub(DECIMAL_MARK, text)
    if "-" in text or "\u2212" in text:
        text = _SIGN.sub(SIGN_MARK, text)
    if "#" in text:
        text = _SHARP.sub(SHARP_MARK, text)
    if "++" in text:
        text = _PLUS_PLUS.sub(PLUS_MARK * 2, text)
    return text


def dedup_key(text: str) -> str:
    """The text with case, whitespace and punctuation differences removed; meaning-changing symbols
    kept; invisible characters and look-alike letters as ``loose_text`` treats them.

    >>> dedup_key("  What is the CAPITAL of France?? ")
    'what is the capital of france'
    >>> dedup_key("Is C# like C++? Add -5 and 4.5.")
    'is c♯ like c⊕⊕ add ⁻5 and 4·5'
    """
    if text.isascii():
        # Fast path for the common case: ASCII is already NFKC, casefold is lower, punctuation by
        # table (the marks are not ASCII, so the table leaves them alone).
        return " ".join(mark_kept_symbols(text.lower()).translate(_ASCII_PUNCTUATION).split())
    folded = mark_kept_symbols(loose_text(text, casefold=True))
    if folded.isascii():
        return " ".join(folded.translate(_ASCII_PUNCTUATION).split())
    return " ".join("".join(" " if _is_punctuation(ch) else ch for ch in folded).split())


def word_ngrams(words: list[str], n: int) -> frozenset[tuple[str, ...]]:
    """Every run of ``n`` consecutive words; empty when there are fewer than ``n`` words."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def contains_words(haystack: str, needle: str) -> bool:
    """True when ``needle``'s normalised words occur consecutively, as whole words, in ``haystack``.

    ``"No."`` is contained in ``"I have no idea"``; ``"cat"`` is not contained in ``"concatenate"``,
    nor ``"C#"`` in ``"I like C"``. An empty needle is contained nowhere (it would otherwise be
    contained everywhere).
    """
    target = dedup_key(needle)
    if not target:
        return False
    return f" {target} " in f" {dedup_key(haystack)} "
