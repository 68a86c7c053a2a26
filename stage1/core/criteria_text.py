"""Text reading shared by the criteria: normalisation, whole-word matching, words, number words
and inflections. Every pattern is compiled once, at import.

Pure: strings only.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from stage1.core.text_keys import DECIMAL_MARK, PLUS_MARK, SHARP_MARK, SIGN_MARK, mark_kept_symbols

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SEPARATOR = re.compile("[^\\w" + DECIMAL_MARK + SIGN_MARK + SHARP_MARK + PLUS_MARK + "]+|_")
_WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")
_NOT = re.compile(r"n[\'’]t\b")
_CONTENT = re.compile(r"[^\W_]")  # a letter or a digit, in any script

#: Words that mark a clause, not a bare candidate ("Milan" is a candidate; "it is Milan" a clause).
CLAUSE_WORDS = frozenset({
    "i", "you", "he", "she", "it", "we", "they", "its", "this", "that", "these", "those", "there", "which", "who",
    "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "do", "does", "did", "can", "could",
    "will", "would", "shall", "should", "may", "might", "must", "also", "because", "when", "while", "if", "so", "then",
    "than", "in", "on", "at", "to", "from", "with", "by", "for", "into", "as", "about", "after", "before", "over",
})


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=65536)
def normalise_for_matching(text: str) -> str:
    """Casefolded, accent-free words separated by single spaces; thousands separators dropped.

    Symbols that change what a token means are kept as marks: a decimal point between digits
    (``4.5`` is not ``4`` and ``5``), a minus sign before a number (``-5`` is not ``5``), and ``#``
    or ``++`` after a word (``C#`` and ``C++`` are not ``C``). Non-Latin letters are kept through
    NFKD; only combining marks are removed. Cached: a scoring pass meets the same references and
    keywords on every row.
    """
    text = strip_accents(text).casefold()
    text = _THOUSANDS.sub("", text)
    text = mark_kept_symbols(text)
    return " ".join(word for word in _SEPARATOR.split(text) if word)


def has_content(text: str) -> bool:
    """Whether ``text`` holds a letter or a digit in any script: ``.``, ``- - -`` and ``=====`` do not."""
    return _CONTENT.search(text) is not None


def contains_phrase(text: str, phrase: str) -> bool:
    """True when ``phrase`` occurs in ``text`` as whole words, after ``normalise_for_matching``."""
    needle = normalise_for_matching(phrase)
    if not needle:
        return False
    return f" {needle} " in f" {normalise_for_matching(text)} "


def contains_keyword(text: str, keyword: str) -> bool:
    """Whole-word match that also accepts the regular plural of the keyword's last word.

    ``planet`` matches ``planets``, ``city`` matches ``cities``; ``how`` never matches ``show``.
    """
    needle = normalise_for_matching(keyword)
    if not needle:
        return False
    stem, last = needle.rsplit(" ", 1) if " " in needle else ("", needle)
    forms = {last, last + "s", last + "es"}
    if last.endswith("y") and len(last) > 1:
        forms.add(last[:-1] + "ies")
    haystack = f" {normalise_for_matching(text)} "
    prefix = f"{stem} " if stem else ""
    return any(f" {prefix}{form} " in haystack for form in forms)


def words_of(text: str) -> list[str]:
    """Words as a reader counts them: ``don't``, ``3.14`` and ``well-known`` are one word each."""
    return _WORD.findall(text)


def tokens(text: str) -> list[str]:
    """``normalise_for_matching`` words, with "n't" read as "not" ("isn't" -> "is not")."""
    return normalise_for_matching(_NOT.sub(" not", text)).split()


# ---------------------------------------------------------------- number words

_UNITS = {word: value for value, word in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"))}
_TENS = {word: 10 * value for value, word in enumerate(
    ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORD = "(?:" + "|".join(sorted((*_UNITS, *_TENS, *_SCALES), key=len, reverse=True)) + ")"
#: A run of number words ("one hundred and five", "twenty-one"); "one" after a determiner ("the
#: one on the left", "no one") is a pronoun, not a number.
_NUMBER_RUN = re.compile(
    rf"(?<![\w-])(?<!the )(?<!this )(?<!that )(?<!which )(?<!no )(?<!any )(?<!every )(?<!each )(?<!another )"
    rf"{_NUMBER_WORD}(?:(?:[\s-]+|\s+and\s+)(?={_NUMBER_WORD}\b){_NUMBER_WORD})*(?![\w-])",
    re.IGNORECASE,
)
_RUN_WORDS = re.compile(r"[a-z]+")


def _number_value(run: str) -> int | None:
    """The value of a run of number words, or None when it is not one number ("one two")."""
    total = current = 0
    last = None  # "unit", "teen", "ten", "scale" (hundred), "big scale": what the previous word was
    for word in _RUN_WORDS.findall(run.casefold()):
        if word == "and":
            continue
        if word in _SCALES:
            if last is None or last == "big scale":
                return None  # "hundred" alone, "thousand hundred"
            if _SCALES[word] == 100:
                current *= 100
            else:
                total, current = total + current * _SCALES[word], 0
            last = "scale" if _SCALES[word] == 100 else "big scale"
        elif word in _TENS:
            if last in ("unit", "teen", "ten"):
                return None
            current, last = current + _TENS[word], "ten"
        else:
            if last in ("unit", "teen") or (last == "ten" and _UNITS[word] >= 10):
                return None
            current, last = current + _UNITS[word], ("teen" if _UNITS[word] >= 10 else "unit")
    return total + current


def digits_for_number_words(text: str) -> str:
    """``text`` with each run of English number words written in digits ("Sixty plus forty equals
    one hundred." -> "60 plus 40 equals 100."); a run that is not one number is left as it is."""
    if not _NUMBER_RUN.search(text):
        return text
    return _NUMBER_RUN.sub(lambda match: str(value) if (value := _number_value(match.group(0))) is not None else match.group(0), text)


# ---------------------------------------------------------------- inflections


MIN_STEM = 4  # "closed" is "close" + "d"; "seed" is not "see" + "d"


@lru_cache(maxsize=4096)
def inflections(word: str) -> frozenset[str]:
    """A one-word answer and its regular inflections: -s, -es, -ed, -ing (with e-drop, y to i and a
    doubled final consonant); an answer ending in -ed also stands for its stem ("closed" gives
    "close", "closes", "closing"; "stop" gives "stopped"). Comparatives and adverbs (-er, -est,
    -ly) are other words; irregular forms ("sold") are not made: an item lists them as aliases.
    Only alphabetic words of three letters or more are inflected."""
    if not word.isalpha() or len(word) < 3:
        return frozenset({word})
    stems = {word}
    if word.endswith("ed"):
        stems |= {stem for stem in (word[:-2], word[:-1]) if len(stem) >= MIN_STEM}  # "opened" -> "open"; "closed" -> "close"
        if len(word) - 2 > MIN_STEM and word[-3] == word[-4]:
            stems.add(word[:-3])  # "stopped" -> "stop"
    forms = set()
    for stem in stems:
        base = stem[:-1] if stem.endswith("e") else stem
        forms |= {stem, stem + "s", stem + "es", stem + "ed" if not stem.endswith("e") else stem + "d", base + "ing"}
        if stem[-1] not in "aeiouwxy" and stem[-2] in "aeiou":
            forms |= {stem + stem[-1] + "ed", stem + stem[-1] + "ing"}  # "stop" -> "stopped"
        if stem.endswith("y") and stem[-2] not in "aeiou":
            forms |= {stem[:-1] + "ies", stem[:-1] + "ied"}
    return frozenset(forms)
