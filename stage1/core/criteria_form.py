"""The form of an answer: one word, a number, yes/no, one sentence, n list items, and whether it is
degenerate. Used by ``follows_constraint`` and ``not_degenerate`` (``stage1.core.criteria``).

Pure: strings only. Every pattern is compiled once, at import.
"""

from __future__ import annotations

import re

from stage1.core.criteria_text import CLAUSE_WORDS, tokens, words_of

EDGE_PUNCTUATION = " \t\n.,!?;:\"'`*_()[]“”‘’«»"
_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?")
_LIST_LINE = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S")
_INLINE_SPLIT = re.compile(r"\s*(?:,|;)\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+")
_SENTENCE_END = re.compile(r"([.!?]+|…)[\"')\]”’]*\s+(?=[^\W_]|[\"'“‘(])")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "u.s", "u.k", "no", "approx", "inc", "ltd", "co"}
_LEAD_IN = re.compile(r"^.*?\b(?:are|include|includes|including|is|were|would be|could be)\s+", re.IGNORECASE)
#: A series written as the subject of a sentence ("Mars and Jupiter are two planets."): the
#: predicate after its last member is cut off before the members are counted.
_PREDICATE = re.compile(r"\s+(?:are|were|is|was)\s+.*$", re.IGNORECASE | re.S)
MAX_ITEM_WORDS = 4  # a list item written inline ("dark green leaves") is at most this long


def core_text(text: str) -> str:
    return text.strip().strip(EDGE_PUNCTUATION).strip()


def is_one_word(text: str) -> bool:
    """One word, allowing surrounding punctuation or emphasis (``Paris.``, ``**Yes**``)."""
    core = core_text(text)
    return bool(core) and len(words_of(core)) == 1 and words_of(core)[0] == core


def is_number(text: str) -> bool:
    """Only a number in digits (``42``, ``-3.5``, ``1,000``, ``15%``), with optional end punctuation."""
    core = text.strip().rstrip(".!").strip()
    return bool(_NUMBER.fullmatch(core))


def leading_yes_no(text: str) -> str | None:
    """``"yes"`` or ``"no"`` when the answer begins with that word (an explanation may follow)."""
    words = words_of(text.strip().lstrip(EDGE_PUNCTUATION))
    first = words[0].casefold() if words else ""
    return first if first in ("yes", "no") else None


def is_yes_no(text: str) -> bool:
    """The answer begins with the word yes or no (an explanation may follow)."""
    return leading_yes_no(text) is not None


def count_sentences(text: str) -> int:
    """Sentences in prose: a ``.``, ``!`` or ``?`` followed by space and more text ends one.

    Abbreviations (``Dr.``, ``e.g.``, ``U.S.``) and single initials do not end a sentence, nor does
    an ellipsis before a lower-case word ("wait... then"); a line break between non-empty lines
    does. A lower-case start after a full stop still counts ("I like it. it is good." is two).
    """
    count = 0
    for line in (part.strip() for part in text.split("\n")):
        if not line:
            continue
        count += 1
        for match in _SENTENCE_END.finditer(line):
            before = line[: match.start()].split()
            last = before[-1].rstrip(".").casefold() if before else ""
            if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                continue
            ellipsis = match.group(1) in ("…",) or len(match.group(1)) >= 3
            if ellipsis and line[match.end()].islower():
                continue
            count += 1
    return count


def _is_item(part: str) -> bool:
    words = tokens(part)
    return 0 < len(words) <= MAX_ITEM_WORDS and not CLAUSE_WORDS.intersection(words)


def _series_items(line: str) -> int:
    """Items of a one-line series ("Red, blue and yellow."), after any lead-in ("The colours are",
    "Three colours:") or before a predicate ("Mars and Jupiter are two planets."); 0 when a part
    is a clause, not an item ("Water evaporates, condenses into clouds and falls as rain." is prose)."""
    core = core_text(line.rsplit(":", 1)[1] if ":" in line.rstrip(":") else line)
    parts = [part for part in _INLINE_SPLIT.split(core) if part.strip()]
    if len(parts) >= 2 and not _is_item(parts[0]):
        parts[0] = _LEAD_IN.sub("", parts[0], count=1)  # a series has a lead-in or a predicate, not both
    elif len(parts) >= 2 and not _is_item(parts[-1]):
        parts[-1] = _PREDICATE.sub("", parts[-1], count=1)
    if not parts or not all(_is_item(part) for part in parts):
        return 0
    return len(parts)


def count_items(text: str) -> int:
    """List items: bullet or numbered lines when there are any, else short lines or a series.

    Without list markers, each line that is a bare item counts once, a line holding a series
    ("Red, blue and yellow.", "The colours are red, blue and yellow.", "Mars and Jupiter are two
    planets.") counts its members, and a lead-in line ending in a colon counts nothing. Prose
    counts nothing: its clauses ("Water evaporates, condenses into clouds and falls as rain.",
    "Red is warm, blue is calm and yellow is bright.") are not items.
    """
    lines = [line for line in text.split("\n") if line.strip()]
    list_lines = [line for line in lines if _LIST_LINE.match(line)]
    if list_lines:
        return len(list_lines)
    return sum(_series_items(line) for line in lines if not line.rstrip().endswith(":"))


# ---------------------------------------------------------------- degenerate text

MIN_WORDS_FOR_NGRAM_CHECK = 12
NGRAM = 3
MIN_DISTINCT_NGRAM_RATIO = 0.5
MAX_REPEATED_WORD_RUN = 3
MAX_REPEATED_CHAR_RUN = 20
MAX_LINE_REPEATS = 2
# Digits and rule characters may run long in real answers (10**24 written out, a '====' underline).
_CHAR_RUN = re.compile(r"(?![\d=\-_*#~.])(\S)\1{" + str(MAX_REPEATED_CHAR_RUN) + ",}")


def repetition_problem(text: str) -> str | None:
    """Why the text is degenerate, or None. Short answers ("Paris.", "4") are never degenerate."""
    words = [word.casefold() for word in words_of(text)]
    run = 1
    for previous, current in zip(words, words[1:]):
        run = run + 1 if current == previous else 1
        if run > MAX_REPEATED_WORD_RUN:
            return f"the word {current!r} repeated {run} times in a row"
    if _CHAR_RUN.search(text):
        return f"a character repeated more than {MAX_REPEATED_CHAR_RUN} times"
    if len(words) >= MIN_WORDS_FOR_NGRAM_CHECK:
        grams = [tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]
        ratio = len(set(grams)) / len(grams)
        if ratio < MIN_DISTINCT_NGRAM_RATIO:
            return f"only {ratio:.0%} of word {NGRAM}-grams are distinct"
    lines = [line.strip() for line in text.split("\n") if len(line.strip()) >= 10]
    for line in set(lines):
        if lines.count(line) > MAX_LINE_REPEATS:
            return f"the line {line[:40]!r} repeated {lines.count(line)} times"
    return None
