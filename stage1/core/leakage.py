"""The leakage gate: no held-out evaluation instruction may appear in SFT or DPO training data.

It fails closed. A leak raises ``GateError`` listing every offender; a missing or empty evaluation
file is an error too, never a silent pass (a gate without its evidence proves nothing).

Two ways an evaluation instruction "appears" in a training instruction, both on
``text_keys.dedup_key`` text (case, whitespace and punctuation ignored; the symbols that change
meaning kept, so "What is C#?" is not a copy of "What is C?" and "-5" is not "5"):

- **exact**: the normalised texts are equal;
- **near**: most of the evaluation instruction's word n-grams occur in the training instruction,
  and the training instruction holds the item's facts and content words (``carries_facts_of``: its
  numbers, named entities and content words, defined as for paraphrases below), so a sibling of the
  item's template with another fact is not a copy however many n-grams it shares.
  The measure is containment, ``|E ∩ T| / |E|`` over word ``ngram``-grams, and a pair at or above
  ``threshold`` (inclusive) is a leak. Containment rather than Jaccard, because an evaluation item
  copied into training with words added ("... in one word") is still a leak, while a training
  instruction that merely shares a template with an item ("capital of Spain" vs "capital of France":
  3 of 4 trigrams) is not. An evaluation instruction shorter than ``ngram`` words leaks when its
  words occur consecutively in a training instruction;
- **paraphrase**: the same question in other words ("Which city is the capital of Italy?" /
  "What is the capital of Italy?", "Compute 12 times 11." / "What is 12 times 11?"). Compared on
  content words (``content_signature``: stop words removed, light suffix stemming) and facts (the
  numbers, in order, and the named entities: capitalised words not starting a sentence). A pair is
  a paraphrase when its facts are equal, the smaller set of content words (at least
  ``PARAPHRASE_MIN_WORDS``) lies inside the larger, and the larger has at most
  ``paraphrase_extra_words`` more. Facts must match, so one template's items ("capital of Italy"
  vs "capital of France", "12 times 11" vs "12 times 13") are not paraphrases; containment, so "Is
  the sun a star? Answer yes or no." vs "Is the moon a star? Answer yes or no." (4 of 5 content
  words shared, the differing noun not an entity) is not one either. Known misses: an entity that
  starts the sentence in one text and not in the other ("Italy is in which continent?"), and
  synonyms ("largest" vs "biggest").

Pure (``find_leaks``, ``gate_leaks``); the files are read by ``stage1.io.records``
(``leakage_gate``, and ``check_training_files`` for ``stage1 check-leakage``).
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from stage1.core.errors import ConfigError, GateError
from stage1.core.text_keys import (
    DECIMAL_MARK,
    PLUS_MARK,
    SHARP_MARK,
    SIGN_MARK,
    dedup_key,
    loose_text,
    mark_kept_symbols,
    word_ngrams,
)

MAX_LISTED_OFFENDERS = 20


@dataclass(frozen=True)
class LeakageSettings:
    """How near is too near."""

    ngram: int = 3  # words per n-gram when comparing instructions
    threshold: float = 0.8  # share of the eval instruction's n-grams found in a training instruction (inclusive)
    paraphrase_extra_words: int | None = 1  # content words one text may add to the other's and still be a paraphrase; null: off

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ConfigError(f"must be at least 1, got {self.ngram}", field="leakage.ngram")
        if self.paraphrase_extra_words is not None and self.paraphrase_extra_words < 0:
            raise ConfigError(f"must be 0 or more (or null to turn it off), got {self.paraphrase_extra_words}",
                              field="leakage.paraphrase_extra_words")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.threshold}", field="leakage.threshold")


@dataclass(frozen=True)
class Leak:
    """One evaluation instruction found in one training set."""

    eval_id: str
    eval_instruction: str
    training_set: str
    train_id: str
    train_instruction: str
    match: str  # "exact", "near" or "paraphrase"
    similarity: float  # n-gram containment; for a paraphrase, content words shared / content words of the larger

    def describe(self) -> str:
        measure = "content-word overlap" if self.match == "paraphrase" else "containment"
        return (
            f"eval {self.eval_id!r} ({self.eval_instruction!r}) ~ {self.training_set} {self.train_id!r} "
            f"({self.train_instruction!r}): {self.match}, {measure} {self.similarity:.2f}"
        )


# ---------------------------------------------------------------- paraphrases

PARAPHRASE_MIN_WORDS = 2  # fewer content words than this say too little to call two texts the same question
#: Function words, the question words that ask the same thing ("what"/"which"), and the politeness
#: and framing words of instructions: what is left is what a question is about. "why", "how",
#: "who", "when" and "where" stay: "How do you brush your teeth?" is not "Why do we brush our teeth?".
STOP_WORDS = frozenset("""
a an the of in on at to for by with from into onto about as and or nor but if than then so that this these those
is are was were be been being am do does did doing done has have had having can could would should will shall may
might must what which whom whose whats it its it's they them their there here i me my we us
our you your he she his her please tell say give state kindly just one word sentence answer briefly short
""".split())
# Words keep the marks text_keys gives the symbols that change meaning ("c♯" for C#, "⁻5" for -5).
_WORD = re.compile(rf"[^\W\d_]+(?:['\u2019][^\W\d_]+)?[{SHARP_MARK}{PLUS_MARK}]*|{SIGN_MARK}?\d+(?:[.,{DECIMAL_MARK}]\d+)*")
_DIGIT = re.compile(r"\d")
_CAPITALISED = re.compile(rf"(?<![\w'\u2019])[A-Z\u00c0-\u00d6\u00d8-\u00de][^\W\d_]*(?:['\u2019][^\W\d_]+)?[{SHARP_MARK}{PLUS_MARK}]*")


def _digits(text: str) -> str:
    return "".join(_DIGIT.findall(text))


@lru_cache(maxsize=65536)  # instructions repeat their words: most calls are hits
def stem(word: str) -> str:
    """Light suffix stripping, enough that "times"/"time", "computed"/"compute", "cities"/"city" meet."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix, shortest in (("ing", 6), ("ed", 5)):
        if len(word) >= shortest and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


@dataclass(frozen=True)
class ContentSignature:
    """What a question is about: its stemmed content words and its facts (numbers in order, entities)."""

    words: frozenset[str]
    numbers: tuple[str, ...]
    entities: frozenset[str]


def content_signature(text: str) -> ContentSignature:
    """The ``ContentSignature`` of an instruction (see the module docstring).

    Written for speed (the pairs gate signs every distinct training instruction): the regexes do the
    scanning, and Python looks only at the words they return.
    """
    words: set[str] = set()
    numbers: list[str] = []
    text = mark_kept_symbols(loose_text(text))  # zero-width and look-alike letters hide nothing
    for token in _WORD.findall(text.casefold()):
        if token[0].isdigit() or token[0] == SIGN_MARK:
            number = token.replace(",", "")
            numbers.append(number)
            words.add(number)
            continue
        token = token.removesuffix("'s").removesuffix("\u2019s")
        if token not in STOP_WORDS:
            words.add(stem(token))
    entities: set[str] = set()
    for match in _CAPITALISED.finditer(text):
        # A capital starting a sentence (the first word, or after ". ", "? ", ": ") names nothing.
        before = text[: match.start()].rstrip()
        if before and before[-1] not in ".!?:;":
            entities.add(match.group().casefold().removesuffix("'s").removesuffix("\u2019s"))
    return ContentSignature(frozenset(words), tuple(numbers), frozenset(entities))


def carries_facts_of(training: ContentSignature, item: ContentSignature) -> bool:
    """Whether the training text holds every number, entity and content word of the evaluation item.

    A near copy must: "Which city is the capital of China?" shares 4 of the 5 trigrams of "Which
    city is the capital of Italy?" but asks about another country, and "What is the chemical symbol
    for gold?" 4 of 5 with "... for iron?" (a common noun, not an entity, but a content word the
    copy would hold), while "How many minutes are in 7 hours and 3 minutes?" still holds all of
    "How many minutes are in 7 hours?".
    """
    return (not Counter(item.numbers) - Counter(training.numbers) and item.entities <= training.entities
            and item.words <= training.words)


def paraphrase_overlap(a: ContentSignature, b: ContentSignature, extra_words: int) -> float | None:
    """Shared content words / content words of the larger when ``a`` and ``b`` are paraphrases, else None."""
    if a.numbers != b.numbers or a.entities != b.entities:
        return None
    small, large = sorted((a.words, b.words), key=len)
    if len(small) < PARAPHRASE_MIN_WORDS or not small <= large or len(large) - len(small) > extra_words:
        return None
    return len(small) / len(large)


class _EvalIndex:
    """Evaluation instructions indexed by normalised text and by n-gram (the evaluation set is small)."""

    def __init__(self, items: Sequence[tuple[str, str]], ngram: int, threshold: float, extra_words: int | None = None):
        self.items = list(items)
        self.ngram = ngram
        self.threshold = threshold
        self.extra_words = extra_words
        self.signatures = [content_signature(instruction) for _, instruction in self.items]
        # A paraphrase has the item's facts exactly, so only items with the same facts are candidates.
        self.by_facts: dict[tuple[tuple[str, ...], frozenset[str]], list[int]] = defaultdict(list)
        for index, signature in enumerate(self.signatures):
            self.by_facts[(signature.numbers, signature.entities)].append(index)
        # Equal numbers mean equal digits in order: a cheap test that skips signing most texts.
        self.digit_strings = {_digits(instruction) for _, instruction in self.items}
        self.by_key: dict[str, list[int]] = defaultdict(list)
        self.by_gram: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.gram_counts: list[int] = []
        self.short: list[tuple[int, str]] = []  # (index, " key ") for items with fewer than ngram words
        for index, (_, instruction) in enumerate(self.items):
            key = dedup_key(instruction)
            self.by_key[key].append(index)
            grams = word_ngrams(key.split(), ngram)
            self.gram_counts.append(len(grams))
            for gram in grams:
                self.by_gram[gram].append(index)
            if not grams and key:
                self.short.append((index, f" {key} "))

    def matches(self, key: str, text: str | None = None) -> list[tuple[int, str, float]]:
        """(eval index, match kind, similarity) for every evaluation item the instruction leaks.

        ``key`` is the instruction's ``dedup_key``; ``text`` the instruction itself, for the
        paraphrase test (which needs its capitals and is skipped without it).
        """
        found: dict[int, tuple[str, float]] = {index: ("exact", 1.0) for index in self.by_key.get(key, ())}
        shared: dict[int, int] = defaultdict(int)
        for gram in word_ngrams(key.split(), self.ngram):
            for index in self.by_gram.get(gram, ()):
                shared[index] += 1
        signed: list[ContentSignature] = []  # the text's signature, worked out when first needed

        def signature() -> ContentSignature:
            if not signed:
                signed.append(content_signature(text or ""))
            return signed[0]

        def carries_facts(index: int) -> bool:
            return text is None or carries_facts_of(signature(), self.signatures[index])

        for index, count in shared.items():
            containment = count / self.gram_counts[index]
            if index not in found and containment >= self.threshold and carries_facts(index):
                found[index] = ("near", containment)
        padded = f" {key} "
        for index, needle in self.short:
            if index not in found and needle in padded and carries_facts(index):
                found[index] = ("near", 1.0)
        if text is not None and self.extra_words is not None and _digits(text) in self.digit_strings:
            for index in self.by_facts.get((signature().numbers, signature().entities), ()):
                if index in found:
                    continue
                overlap = paraphrase_overlap(signature(), self.signatures[index], self.extra_words)
                if overlap is not None:
                    found[index] = ("paraphrase", overlap)
        return [(index, kind, value) for index, (kind, value) in sorted(found.items())]


#: Instructions whose matches ``find_leaks`` remembers (the least recently used goes first).
MATCH_CACHE_SIZE = 1 << 14


def find_leaks(
    eval_items: Sequence[tuple[str, str]],
    training_sets: Mapping[str, Iterable[tuple[str, str]]],
    settings: LeakageSettings = LeakageSettings(),
) -> list[Leak]:
    """Every (evaluation item, training instruction) pair that counts as a leak.

    Args:
        eval_items: ``(id, instruction)`` of the held-out evaluation items.
        training_sets: name → ``(id, instruction)`` rows of one training set (SFT train, DPO pairs).

    Each distinct normalised training instruction is compared once per set; the first row that
    carries it is reported.
    """
    index = _EvalIndex(eval_items, settings.ngram, settings.threshold, settings.paraphrase_extra_words)
    leaks: list[Leak] = []
    # Recent instructions' matches, shared by the sets (pairs repeat SFT instructions), bounded so
    # memory stays flat however many rows stream past; a key that left it is matched again.
    matched: OrderedDict[str, list[tuple[int, str, float]]] = OrderedDict()
    for name, rows in sorted(training_sets.items()):
        reported: set[str] = set()  # only keys that leak: a clean key repeated reports nothing anyway
        for train_id, instruction in rows:
            key = dedup_key(instruction)
            if key in reported:
                continue
            if key in matched:
                matched.move_to_end(key)
            else:
                matched[key] = index.matches(key, instruction)
                if len(matched) > MATCH_CACHE_SIZE:
                    matched.popitem(last=False)
            if matched[key]:
                reported.add(key)
            for eval_index, kind, similarity in matched[key]:
                eval_id, eval_instruction = index.items[eval_index]
                leaks.append(Leak(eval_id, eval_instruction, name, str(train_id), instruction, kind, similarity))
    return leaks


def leak_report(leaks: Sequence[Leak]) -> str:
    """A readable list of offenders, the first ``MAX_LISTED_OFFENDERS`` of them."""
    lines = [leak.describe() for leak in leaks[:MAX_LISTED_OFFENDERS]]
    if len(leaks) > MAX_LISTED_OFFENDERS:
        lines.append(f"... and {len(leaks) - MAX_LISTED_OFFENDERS} more")
    return "\n  ".join(lines)


def gate_leaks(
    eval_items: Sequence[tuple[str, str]],
    training_sets: Mapping[str, Sequence[tuple[str, str]]],
    settings: LeakageSettings = LeakageSettings(),
    *,
    source: str,
) -> dict[str, Any]:
    """The gate itself: every ``(id, instruction)`` of the evaluation items against every training
    set; a summary for the manifest when nothing leaks.

    Args:
        source: where the evaluation items came from, for the message and the summary.

    Raises:
        GateError: any leak (all offenders listed), or no evaluation items at all.
    """
    if not eval_items:
        raise GateError(f"{source}: no evaluation items; the leakage gate has nothing to check against")
    leaks = find_leaks(eval_items, training_sets, settings)
    if leaks:
        raise GateError(
            f"{len(leaks)} held-out evaluation instruction(s) appear in training data "
            f"(checked against {source}):\n  {leak_report(leaks)}\n"
            "remove these rows from the training data, or these items from the evaluation set"
        )
    return {
        "eval_items_path": str(source),
        "eval_items": len(eval_items),
        "training_rows": {name: len(rows) for name, rows in sorted(training_sets.items())},
        "ngram": settings.ngram,
        "threshold": settings.threshold,
        "paraphrase_extra_words": settings.paraphrase_extra_words,
        "leaks": 0,
    }
