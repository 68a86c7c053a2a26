"""Factually incorrect negatives: the chosen answer with one fact changed, so it contradicts it.

What may change, in order of preference:

1. a number (``42`` -> ``45``; a year moves by up to 30; ``1,000`` keeps its commas), a number
   word (``seven`` -> ``nine``), a named entity from ``facts.ENTITY_CLASSES`` replaced by another
   of its class (``Paris`` -> ``Madrid``), or a leading ``Yes``/``No`` flipped;
2. a word from ``facts.ANTONYMS`` replaced by its opposite, at a whole-word boundary
   (``cold`` -> ``hot``, never inside ``scold``).

A span that the instruction mentions is never changed: it is the question's subject, not the
answer, so changing it answers another question ("Why is Iceland cold?" -> "Serbia is cold because
it is far north." is true of nothing asked; "Iceland is cold because it is far south." contradicts
the answer). The one exception is a replacement the instruction also names, the other option of
a choice it offers ("Answer yes or no", "Is ice hot or cold?"): that is the wrong answer to the same
question. When nothing else can change, the kind is not applicable (``None``): a canned false
sentence would not contradict the chosen answer.

Pure: strings and a ``random.Random``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from stage1.core.text_keys import dedup_key
from stage1.negatives.facts import ANTONYMS, ENTITY_CLASSES, LOWERCASE_CLASSES, NUMBER_WORDS

# A number not glued to a word or another number: "42", "1,000", "3.5"; not the 2 in "H2O" or "3.5"'s 5.
NUMBER_PATTERN = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])(?![.,]\d)")
YES_NO_PATTERN = re.compile(r"^(Yes|No)\b")
SMALL_NUMBER_WORDS = NUMBER_WORDS[:21]  # zero .. twenty
TENS_WORDS = NUMBER_WORDS[21:28]  # thirty .. ninety


_WORD = re.compile(r"\w+")
_PROPER = {name: kind for kind, names in ENTITY_CLASSES.items() if kind not in LOWERCASE_CLASSES for name in names}
_COMMON = {name.casefold(): kind for kind, names in ENTITY_CLASSES.items() if kind in LOWERCASE_CLASSES for name in names}
_OPPOSITE = {a: b for a, b in ANTONYMS} | {b: a for a, b in ANTONYMS}
_NUMBER_WORDS = frozenset((*SMALL_NUMBER_WORDS, *TENS_WORDS))
#: The most words a proper name spans ("J. R. R. Tolkien" is four).
MAX_NAME_WORDS = max(len(_WORD.findall(name)) for name in _PROPER)


@dataclass(frozen=True)
class Change:
    """One possible edit: replace ``text[start:end]`` with ``replacement``."""

    start: int
    end: int
    replacement: str
    method: str
    tier: int


def match_case(template: str, word: str) -> str:
    """``word`` in the case of ``template``: ``Cold`` -> ``Hot``, ``COLD`` -> ``HOT``."""
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def changed_number(text: str, rng: random.Random) -> str:
    """A different number written the same way (commas kept, decimals kept, years stay years)."""
    if "." in text:
        whole, fraction = text.split(".")
        step = 10 ** -len(fraction)
        value = float(whole.replace(",", "") + "." + fraction)
        new = value + rng.choice((-3, -2, -1, 1, 2, 3)) * step
        new = new if new >= 0 else value + step
        return f"{new:.{len(fraction)}f}"
    value = int(text.replace(",", ""))
    if len(text) == 4 and 1000 <= value <= 2100:
        delta = rng.choice((-1, 1)) * rng.randint(1, 30)
    elif value < 10:
        delta = rng.choice((-3, -2, -1, 1, 2, 3))
    else:
        delta = rng.choice((-1, 1)) * rng.choice((1, 2, 3, 5, 10, max(1, value // 10)))
    new = value + delta if value + delta >= 0 else value + abs(delta)
    return f"{new:,}" if "," in text else str(new)


def _changed_number_word(word: str, rng: random.Random) -> str:
    lowered = word.casefold()
    pool = SMALL_NUMBER_WORDS if lowered in SMALL_NUMBER_WORDS else TENS_WORDS
    index = pool.index(lowered)
    options = [pool[i] for i in range(max(0, index - 3), min(len(pool), index + 4)) if i != index]
    return match_case(word, rng.choice(options))


# Each entity's normalised form, padded for whole-word tests against a padded normalised text.
_PADDED_KEYS = {kind: [(name, f" {dedup_key(name)} ") for name in names] for kind, names in ENTITY_CLASSES.items()}


def _entity_replacement(name: str, kind: str, padded_texts: tuple[str, str], rng: random.Random) -> str | None:
    """Another entity of ``kind`` that neither the response nor the instruction mentions."""
    response_key, instruction_key = padded_texts
    members = _PADDED_KEYS[kind]

    def usable(other: str, key: str) -> bool:
        return other.casefold() != name.casefold() and key not in response_key and key not in instruction_key

    # Draw until a usable member turns up (one or two draws in practice), then fall back to the full
    # list, so the choice is uniform over usable members either way.
    for _ in range(8):
        other, key = members[rng.randrange(len(members))]
        if usable(other, key):
            return match_case(name, other) if kind in LOWERCASE_CLASSES else other
    options = [other for other, key in members if usable(other, key)]
    if not options:
        return None
    choice = rng.choice(options)
    return match_case(name, choice) if kind in LOWERCASE_CLASSES else choice


def _words(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _WORD.finditer(text)]


#: The first word of every proper name: a word not in here starts no name, so the longer spans
#: need not be looked up (most words of most answers).
_NAME_FIRST_WORDS = frozenset(_WORD.match(name).group(0) for name in _PROPER)


@dataclass(frozen=True)
class Span:
    """A part of the response that could change: ``text[start:end]``, how, and its tier."""

    start: int
    end: int
    method: str
    tier: int
    entity: str | None = None  # the class of a named entity


def _word_spans(response: str) -> list[Span]:
    """Entity, number-word and antonym spans, found by one scan over the words (whole words only).

    At each word the longest proper name starting there wins, as a regex alternation sorted by
    length would; a dictionary lookup per span keeps this fast with hundreds of names.
    """
    spans: list[Span] = []
    words = _words(response)
    index = 0
    while index < len(words):
        step = 1
        start, end = words[index]
        word = response[start:end]
        longest = min(MAX_NAME_WORDS, len(words) - index) if word in _NAME_FIRST_WORDS else 0
        for length in range(longest, 0, -1):
            end = words[index + length - 1][1]
            kind = _PROPER.get(response[start:end])
            if kind is not None:
                spans.append(Span(start, end, f"entity:{kind}", 1, kind))
                step = length
                break
        else:
            end = words[index][1]
            lowered = word.casefold()
            if lowered in _COMMON:
                spans.append(Span(start, end, f"entity:{_COMMON[lowered]}", 1, _COMMON[lowered]))
            elif lowered in _NUMBER_WORDS:
                spans.append(Span(start, end, "number_word", 1))
            elif lowered in _OPPOSITE:
                spans.append(Span(start, end, "antonym", 2))
        index += step
    return spans


def find_spans(response: str) -> list[Span]:
    """Every part of ``response`` that an edit could contradict: numbers, words, a leading Yes/No."""
    spans = [Span(match.start(), match.end(), "number", 1) for match in NUMBER_PATTERN.finditer(response)]
    spans += _word_spans(response)
    yes_no = YES_NO_PATTERN.match(response)
    if yes_no:
        spans.append(Span(0, yes_no.end(), "yes_no", 1))
    return spans


def _replacement(span: Span, text: str, padded_texts: tuple[str, str], rng: random.Random) -> str | None:
    """A different value for ``text`` (the span's text), drawn with ``rng``; None when there is none."""
    if span.method == "number":
        return changed_number(text, rng)
    if span.entity is not None:
        return _entity_replacement(text, span.entity, padded_texts, rng)
    if span.method == "number_word":
        return _changed_number_word(text, rng)
    if span.method == "antonym":
        return match_case(text, _OPPOSITE[text.casefold()])
    return "No" if text == "Yes" else "Yes"


@lru_cache(maxsize=4096)
def _span_key(span: str) -> str:
    """``dedup_key`` of a word or name, padded (few distinct ones, met again and again)."""
    return f" {dedup_key(span)} "


def _names(padded_instruction_key: str, span: str) -> bool:
    """True when the instruction mentions ``span`` as whole words (after ``dedup_key``)."""
    key = _span_key(span)
    return key != "  " and key in padded_instruction_key


class Falsifier:
    """The spans of one response that could change, found once; each ``draw`` is one incorrect version.

    Built once per example, so a retry (its first draw was used too often) costs a draw, not a scan.
    """

    def __init__(self, response: str, instruction: str):
        self.response = response
        self.spans = find_spans(response)
        self._padded = (f" {dedup_key(response)} ", f" {dedup_key(instruction)} ") if self.spans else ("", "")

    def changes(self, rng: random.Random) -> list[Change]:
        """One drawn edit per span (spans with nothing to change to left out)."""
        changes: list[Change] = []
        for span in self.spans:
            text = self.response[span.start : span.end]
            new = _replacement(span, text, self._padded, rng)
            if new is not None and new != text:
                changes.append(Change(span.start, span.end, new, span.method, span.tier))
        return changes

    def draw(self, rng: random.Random, usable: Callable[[str], bool] | None = None) -> tuple[str, str] | None:
        """``(incorrect response, method)``: a random edit of the best tier that has one ``usable``
        (all are, by default); None when nothing in the response can be contradicted."""
        if not self.spans:
            return None
        asked = self._padded[1]
        changes = [
            change
            for change in self.changes(rng)
            if not _names(asked, self.response[change.start : change.end]) or _names(asked, change.replacement)
        ]
        for tier in sorted({change.tier for change in changes}):
            options = [change for change in changes if change.tier == tier]
            while options:
                change = options.pop(rng.randrange(len(options)))
                falsified = self.response[: change.start] + change.replacement + self.response[change.end :]
                if falsified != self.response and (usable is None or usable(falsified)):
                    return falsified, change.method
        return None


def possible_changes(response: str, instruction: str, rng: random.Random) -> list[Change]:
    """Every edit that would make ``response`` contradict itself (one drawn per span), with its tier."""
    return Falsifier(response, instruction).changes(rng)


def falsify(response: str, instruction: str, rng: random.Random) -> tuple[str, str] | None:
    """``(incorrect response, method)``, or None when nothing in the response can be contradicted."""
    return Falsifier(response, instruction).draw(rng)


#: Categories whose items have no single right answer (a title, a sentence about coffee, a list of
#: birds, how to water a plant): one fact changed there is another valid answer ("Noisy Lantern"
#: for a title), not an incorrect one.
OPEN_CATEGORIES = frozenset({"short_generation", "how_to", "lists", "declined", "creative_writing", "brainstorming"})
#: Requests that ask for something made up or chosen freely, whatever their category.
_OPEN_REQUEST = re.compile(
    r"^(?:please\s+)?(?:write|compose|create|invent|suggest|describe|imagine|brainstorm|come up with|make up|list|"
    r"tell me (?:a|about)|give (?:me )?(?:a|an|some|one|two|three|four|five|\d+)\s+(?:\w+\s+)?"
    r"(?:ideas?|examples?|names?|titles?|tips?|words?)|name (?:exactly |only |just |any )?(?:a|an|some|one|two|three|four|five|\d+))\b",
    re.IGNORECASE,
)


def has_checkable_reference(instruction: str, category: str) -> bool:
    """Whether the item has one right answer that a changed fact would contradict: not an open
    category, and not a request to make something up or to pick freely ("Name a fruit")."""
    return category not in OPEN_CATEGORIES and not _OPEN_REQUEST.match(instruction.strip())
