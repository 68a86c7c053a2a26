"""The facts the model organism learns, read from the shipped pools' rows (pure).

The organism must know what the SFT and evaluation pools ask about, so its facts are parsed from
those rows: each pool category is written from a handful of fixed templates (``fixtures/make_pools.py``),
and one regular expression per template recovers the fact's parts (country and capital, the two
numbers of a sum, a conversion's amount and units, ...). The answer comes from the training row's
response or the evaluation item's reference; a sum is also computed, so the two must agree.

A row that no pattern reads (a free-form evaluation question such as "Which planet is farthest from
the Sun?") gives no fact: it is counted in the organism's manifest as a fact the organism was never
told, and such items stay unanswerable for it. Training rows always give at least a question-answer
fact (``qa``), which the corpus writes in its question-answer documents.

A fact's ``source`` is ``train`` (an SFT row says it) or ``heldout`` (only an evaluation item asks
it): the corpus states both in prose, so the evaluation can tell eliciting knowledge (held-out facts
answered after SFT) from teaching it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "plus": lambda a, b: a + b,
    "minus": lambda a, b: a - b,
    "times": lambda a, b: a * b,
}
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4}


@dataclass(frozen=True)
class Fact:
    """One thing the organism is told.

    Attributes:
        kind: ``capital``, ``arithmetic``, ``conversion``, ``antonym``, ``completion``,
            ``definition``, ``members`` (a few members of a named group), ``statement`` (a
            free-form training answer) or ``qa`` (a training question with its answer).
        slots: the fact's parts by name, as text (see ``_PARSERS``).
        source: ``train`` or ``heldout``.
    """

    kind: str
    slots: tuple[tuple[str, str], ...]
    source: str

    def get(self, name: str) -> str:
        return dict(self.slots)[name]

    @property
    def key(self) -> tuple:
        """What makes two facts the same fact whichever pool row named it (answers included)."""
        return (self.kind, self.slots)


def _fact(kind: str, source: str, **slots: Any) -> Fact:
    return Fact(kind, tuple(sorted((name, str(value)) for name, value in slots.items())), source)


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]


def _arithmetic_with(operation: str | None) -> Callable[[re.Match, str | None, str], Fact]:
    """The builder of a sum whose operation is ``operation`` (None: the pattern's ``op`` group, as in
    "What is 2 plus 3?"; a wording such as "Multiply 4 by 5." names it by its verb)."""

    def build(match: re.Match, answer: str | None, source: str) -> Fact:
        a, op, b = int(match["a"]), operation or match["op"], int(match["b"])
        return _fact("arithmetic", source, a=a, op=op, b=b, result=OPERATIONS[op](a, b))

    return build


_arithmetic = _arithmetic_with(None)


def _capital(match: re.Match, answer: str | None, source: str) -> Fact | None:
    if answer is None:
        return None
    found = re.search(r"is (?P<city>[^.]+)\.?$", _first_sentence(answer))
    city = found["city"] if found and "capital" in answer else answer.rstrip(".")
    return _fact("capital", source, country=match["country"], city=city.strip())


def _conversion(match: re.Match, answer: str | None, source: str) -> Fact | None:
    if answer is None:
        return None
    number = re.search(r"\d[\d,]*", answer)
    if number is None:
        return None
    return _fact("conversion", source, amount=match["amount"], unit=match["unit"], target=match["target"],
                 result=number.group().replace(",", ""))


def _antonym(match: re.Match, answer: str | None, source: str) -> Fact | None:
    if answer is None:
        return None
    found = re.search(r"is (?P<word>[\w-]+)\.?$", _first_sentence(answer))
    return _fact("antonym", source, word=match["word"], opposite=found["word"] if found else answer.rstrip("."))


def _completion(match: re.Match, answer: str | None, source: str) -> Fact | None:
    if answer is None:
        return None
    start = match["start"].strip()
    sentence = _first_sentence(answer)
    if not sentence.startswith(start):  # an evaluation reference is the missing words only
        sentence = f"{start} {answer.strip().rstrip('.')}."
    return _fact("completion", source, start=start, sentence=sentence)


def _definition(match: re.Match, answer: str | None, source: str) -> Fact | None:
    return None if answer is None else _fact("definition", source, term=match["term"], text=_first_sentence(answer))


def _members(match: re.Match, answer: str | None, source: str) -> Fact | None:
    if answer is None:
        return None
    items = [item.strip() for item in re.split(r",|\band\b|\n", re.sub(r"^\s*\d+\.\s*", "", answer, flags=re.M)) if item.strip()]
    items = [item.rstrip(".").strip() for item in items if item.rstrip(".").strip()]
    if any(item[:1].islower() for item in items[1:]):  # "Apple, cherry and pear.": common nouns
        items[0] = items[0][:1].lower() + items[0][1:]
    return _fact("members", source, group=match["group"], items="|".join(items)) if items else None


# (category, pattern, builder): one per pool template that states a fact (fixtures/make_pools.py).
_PARSERS: tuple[tuple[str, re.Pattern, Callable], ...] = tuple(
    (category, re.compile(pattern), builder)
    for category, pattern, builder in (
        ("factual_qa", r"^(?:What|Which city) is the capital of (?P<country>[^?]+)\?$", _capital),
        ("factual_qa", r"^Name the city that is (?P<country>.+)'s capital\.$", _capital),
        ("format_constraint", r"^In one word, what is the capital of (?P<country>[^?]+)\?$", _capital),
        ("format_constraint", r"^Using a single word, name the capital of (?P<country>[^.]+)\.$", _capital),
        ("arithmetic", r"^(?:What is|Compute) (?P<a>\d+) (?P<op>plus|minus|times) (?P<b>\d+)[?.]$", _arithmetic),
        ("format_constraint", r"^(?:Give only the number|Reply with just the number): what is (?P<a>\d+) (?P<op>plus|minus|times) (?P<b>\d+)\?$", _arithmetic),
        ("conversions", r"^How many (?P<target>\w+) are in (?P<amount>\d+) (?P<unit>\w+)\?$", _conversion),
        ("arithmetic", r"^Add (?P<a>\d+) and (?P<b>\d+)\.$", _arithmetic_with("plus")),
        ("arithmetic", r"^Take (?P<b>\d+) away from (?P<a>\d+)\.$", _arithmetic_with("minus")),
        ("arithmetic", r"^Multiply (?P<a>\d+) by (?P<b>\d+)\.$", _arithmetic_with("times")),
        ("conversions", r"^Convert (?P<amount>\d+) (?P<unit>\w+) to (?P<target>\w+)\.$", _conversion),
        ("conversions", r"^(?P<amount>\d+) (?P<unit>\w+) equal how many (?P<target>\w+)\?$", _conversion),
        ("antonyms", r"^(?:What is|Give) the opposite of (?P<word>[\w-]+)[?.]$", _antonym),
        ("antonyms", r"^Which word means the reverse of (?P<word>[\w-]+)\?$", _antonym),
        ("sentence_completion", r"^(?:Complete the sentence|Finish this sentence|Say how this sentence ends): (?P<start>.+)$",
         _completion),
        ("definitions", r"^Define (?P<term>[^.]+)\.$", _definition),
        ("lists", r"^List (?:two|three|four) (?P<group>[^.]+?)(?: as a numbered list)?\.$", _members),
        ("format_constraint", r"^Name exactly two (?P<group>[^.]+)\.$", _members),
    )
)
_EXPLAIN = re.compile(r"^Explain what the word (?P<term>[\w-]+) means\.$")
_LIST_ITEM = re.compile(r"^Give me a list of (?:two|three|four) (?P<group>[^.]+)\.$")


def fact_of_row(row: Mapping[str, Any], source: str) -> Fact | None:
    """The fact one pool row states or asks (``source`` ``train`` for an SFT row, ``heldout`` for an
    evaluation item), or None when no template reads it."""
    instruction = str(row.get("instruction", "")).strip()
    answer = row.get("response") if source == "train" else row.get("reference")
    for category, pattern, builder in _PARSERS:
        match = pattern.match(instruction)
        if match and row.get("category") == category:
            return builder(match, None if answer is None else str(answer), source)
    keywords = [str(word) for word in row.get("topic_keywords") or ()]
    if source == "heldout" and (match := _EXPLAIN.match(instruction)) and keywords:
        return _fact("definition", source, term=match["term"], text="", keywords="|".join(keywords[1:]))
    if source == "heldout" and (match := _LIST_ITEM.match(instruction)) and keywords:
        return _fact("members", source, group=match["group"], items="|".join(keywords))
    return None


def facts_of_pools(train_rows: Iterable[Mapping[str, Any]], eval_items: Iterable[Mapping[str, Any]]) -> tuple[list[Fact], dict[str, int]]:
    """Every fact of the SFT rows (plus a ``qa`` fact per answerable training row) and of the
    evaluation items, once each in first-seen order, with the count of rows no template read, by
    pool and category (``{"heldout:factual_qa": 13, ...}``). Declined requests give no fact."""
    facts: dict[tuple, Fact] = {}
    unread: dict[str, int] = {}
    for source, rows in (("train", train_rows), ("heldout", eval_items)):
        for row in rows:
            if row.get("refusal_expected"):
                continue
            fact = fact_of_row(row, source)
            if source == "train":
                qa = _fact("qa", source, question=str(row["instruction"]).strip(), answer=str(row["response"]).strip())
                facts.setdefault(qa.key, qa)
            if fact is None and source == "train" and row.get("category") == "factual_qa":
                fact = _fact("statement", source, text=_first_sentence(str(row["response"])))
            if fact is None:
                if source == "heldout":
                    name = f"{source}:{row.get('category')}"
                    unread[name] = unread.get(name, 0) + 1
                continue
            facts.setdefault(fact.key, fact)
    return _merge_members(list(facts.values())), dict(sorted(unread.items()))


def _merge_members(facts: list[Fact]) -> list[Fact]:
    """One ``members`` fact per group and source, holding every item any row named; an item written
    in lower case anywhere ("apple" in "Pear and apple.") is a common noun and stays lower case."""
    merged: dict[tuple[str, str], list[str]] = {}
    for fact in facts:
        if fact.kind == "members":
            merged.setdefault((fact.get("group"), fact.source), []).extend(fact.get("items").split("|"))
    lower = {item.lower() for items in merged.values() for item in items if item[:1].islower()}
    out = [fact for fact in facts if fact.kind != "members"]
    for (group, source), items in merged.items():
        names = dict.fromkeys(item.lower() if item.lower() in lower else item for item in items)
        out.append(_fact("members", source, group=group, items="|".join(names)))
    return out
