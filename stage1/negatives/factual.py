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
from stage1.text_keys import dedup_key

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


def _word_changes(response: str, padded_texts: tuple[str, str], rng: random.Random) -> list[Change]:
    """Entity, number-word and antonym changes, found by one scan over the words (whole words only).

    At each word the longest proper name starting there wins, as a regex alternation sorted by
    length would; a dictionary lookup per span keeps this fast with hundreds of names.
    """
    changes: list[Change] = []
    words = _words(response)
    index = 0
    while index < len(words):
        span = 1
        for length in range(min(MAX_NAME_WORDS, len(words) - index), 0, -1):
            start, end = words[index][0], words[index + length - 1][1]
            kind = _PROPER.get(response[start:end])
            if kind is not None:
                new = _entity_replacement(response[start:end], kind, padded_texts, rng)
                if new is not None:
                    changes.append(Change(start, end, new, f"entity:{kind}", 1))
                span = length
                break
        else:
            start, end = words[index]
            word = response[start:end]
            lowered = word.casefold()
            if lowered in _COMMON:
                new = _entity_replacement(word, _COMMON[lowered], padded_texts, rng)
                if new is not None:
                    changes.append(Change(start, end, new, f"entity:{_COMMON[lowered]}", 1))
            elif lowered in _NUMBER_WORDS:
                changes.append(Change(start, end, _changed_number_word(word, rng), "number_word", 1))
            elif lowered in _OPPOSITE:
                changes.append(Change(start, end, match_case(word, _OPPOSITE[lowered]), "antonym", 2))
        index += span
    return changes


def possible_changes(response: str, instruction: str, rng: random.Random) -> list[Change]:
    """Every edit that would make ``response`` contradict itself, with its tier."""
    changes: list[Change] = []
    for match in NUMBER_PATTERN.finditer(response):
        new = changed_number(match.group(0), rng)
        if new != match.group(0):
            changes.append(Change(match.start(), match.end(), new, "number", 1))
    padded_texts = (f" {dedup_key(response)} ", f" {dedup_key(instruction)} ")
    changes += _word_changes(response, padded_texts, rng)
    yes_no = YES_NO_PATTERN.match(response)
    if yes_no:
        changes.append(Change(0, yes_no.end(), "No" if yes_no.group(0) == "Yes" else "Yes", "yes_no", 1))
    return changes


def falsify(response: str, instruction: str, rng: random.Random) -> tuple[str, str] | None:
    """``(incorrect response, method)``, or None when nothing in the response can be contradicted."""
    changes = possible_changes(response, instruction, rng)
    if not changes:
        return None
    instruction_key = f" {dedup_key(instruction)} "
    ranks = [(change.tier, int(f" {dedup_key(response[change.start : change.end])} " in instruction_key)) for change in changes]
    best = min(ranks)
    change = rng.choice([change for change, rank in zip(changes, ranks) if rank == best])
    falsified = response[: change.start] + change.replacement + response[change.end :]
    return (falsified, change.method) if falsified != response else None
