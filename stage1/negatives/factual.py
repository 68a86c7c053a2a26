"""Factually incorrect negatives: the chosen answer with one fact changed, so it contradicts it.

What may change, in order of preference:

1. a number (``42`` -> ``45``; a year moves by up to 30; ``1,000`` keeps its commas), a number
   word (``seven`` -> ``nine``), a named entity from ``facts.ENTITY_CLASSES`` replaced by another
   of its class (``Paris`` -> ``Madrid``), or a leading ``Yes``/``No`` flipped;
2. a word from ``facts.ANTONYMS`` replaced by its opposite, at a whole-word boundary
   (``cold`` -> ``hot``, never inside ``scold``).

Within a tier, a span that the instruction does not mention is preferred: in "The capital of France
is Paris." the answer is ``Paris``, not ``France``. When nothing can change, the kind is not
applicable (``None``): a canned false sentence would not contradict the chosen answer.

Pure: strings and a ``random.Random``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from stage1.negatives.facts import ANTONYMS, ENTITY_CLASSES, LOWERCASE_CLASSES, NUMBER_WORDS
from stage1.text_keys import contains_words

# A number not glued to a word or another number: "42", "1,000", "3.5"; not the 2 in "H2O" or "3.5"'s 5.
NUMBER_PATTERN = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])(?![.,]\d)")
YES_NO_PATTERN = re.compile(r"^(Yes|No)\b")
SMALL_NUMBER_WORDS = NUMBER_WORDS[:21]  # zero .. twenty
TENS_WORDS = NUMBER_WORDS[21:28]  # thirty .. ninety


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(word) for word in sorted(set(words), key=lambda w: (-len(w), w)))


_PROPER = {name: kind for kind, names in ENTITY_CLASSES.items() if kind not in LOWERCASE_CLASSES for name in names}
_COMMON = {name.casefold(): kind for kind, names in ENTITY_CLASSES.items() if kind in LOWERCASE_CLASSES for name in names}
PROPER_PATTERN = re.compile(rf"\b(?:{_alternation(list(_PROPER))})\b")
COMMON_PATTERN = re.compile(rf"\b(?:{_alternation(list(_COMMON))})\b", re.IGNORECASE)
NUMBER_WORD_PATTERN = re.compile(rf"\b(?:{_alternation([*SMALL_NUMBER_WORDS, *TENS_WORDS])})\b", re.IGNORECASE)
_OPPOSITE = {a: b for a, b in ANTONYMS} | {b: a for a, b in ANTONYMS}
ANTONYM_PATTERN = re.compile(rf"\b(?:{_alternation(list(_OPPOSITE))})\b", re.IGNORECASE)


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


def _entity_replacement(name: str, kind: str, response: str, instruction: str, rng: random.Random) -> str | None:
    options = [
        other
        for other in ENTITY_CLASSES[kind]
        if other.casefold() != name.casefold() and not contains_words(response, other) and not contains_words(instruction, other)
    ]
    if not options:
        return None
    choice = rng.choice(options)
    return match_case(name, choice) if kind in LOWERCASE_CLASSES else choice


def possible_changes(response: str, instruction: str, rng: random.Random) -> list[Change]:
    """Every edit that would make ``response`` contradict itself, with its tier."""
    changes: list[Change] = []
    for match in NUMBER_PATTERN.finditer(response):
        new = changed_number(match.group(0), rng)
        if new != match.group(0):
            changes.append(Change(match.start(), match.end(), new, "number", 1))
    for match in NUMBER_WORD_PATTERN.finditer(response):
        changes.append(Change(match.start(), match.end(), _changed_number_word(match.group(0), rng), "number_word", 1))
    for pattern, kinds, key in ((PROPER_PATTERN, _PROPER, str), (COMMON_PATTERN, _COMMON, str.casefold)):
        for match in pattern.finditer(response):
            kind = kinds[key(match.group(0))]
            new = _entity_replacement(match.group(0), kind, response, instruction, rng)
            if new is not None:
                changes.append(Change(match.start(), match.end(), new, f"entity:{kind}", 1))
    yes_no = YES_NO_PATTERN.match(response)
    if yes_no:
        changes.append(Change(0, yes_no.end(), "No" if yes_no.group(0) == "Yes" else "Yes", "yes_no", 1))
    for match in ANTONYM_PATTERN.finditer(response):
        word = match.group(0)
        changes.append(Change(match.start(), match.end(), match_case(word, _OPPOSITE[word.casefold()]), "antonym", 2))
    return changes


def falsify(response: str, instruction: str, rng: random.Random) -> tuple[str, str] | None:
    """``(incorrect response, method)``, or None when nothing in the response can be contradicted."""
    changes = possible_changes(response, instruction, rng)
    if not changes:
        return None

    def rank(change: Change) -> tuple[int, int]:
        in_instruction = contains_words(instruction, response[change.start : change.end])
        return change.tier, int(in_instruction)

    best = min(rank(change) for change in changes)
    change = rng.choice([c for c in changes if rank(c) == best])
    falsified = response[: change.start] + change.replacement + response[change.end :]
    return (falsified, change.method) if falsified != response else None
