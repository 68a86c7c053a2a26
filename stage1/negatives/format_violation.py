"""Format violations: the failures a base model must unlearn, built from the chosen answer.

- ``missing_end``: the answer with no ``END`` line (the model never stops);
- ``runaway``: the answer, then a new ``Instruction:`` the model goes on to write;
- ``truncated``: the answer cut mid-sentence at a word boundary and ended, so stopping too early
  is what is rejected (answers under four words are never truncated: "Paris." is complete);
- ``ignores_constraint:<kind>``: an answer that ignores an explicit constraint of the instruction
  ("in one word", "yes or no", "a list of three", "only the number", "in one sentence").

Pure: strings and a ``random.Random``.
"""

from __future__ import annotations

import random
import re

from stage1.core.format import INSTRUCTION_TAG, RESPONSE_TAG, render_completion
from stage1.core.records import SFTExample
from stage1.negatives import templates

_COUNT_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6}
CONSTRAINT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("one_word", re.compile(r"\b(?:one|a single) word\b", re.IGNORECASE)),
    ("yes_no", re.compile(r"\byes or no\b", re.IGNORECASE)),
    ("number", re.compile(r"\b(?:only|just) (?:the|a) number\b|\bnumber only\b|\bwith a number\b", re.IGNORECASE)),
    ("one_sentence", re.compile(r"\b(?:one|a single) sentence\b", re.IGNORECASE)),
    (
        "n_items",
        re.compile(
            r"\b(?:list|name|give)\s+(?:exactly\s+|me\s+)?(two|three|four|five|six|[2-6])\b|\ba list of (two|three|four|five|six|[2-6])\b",
            re.IGNORECASE,
        ),
    ),
)
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+\S")
_INLINE_ITEMS = re.compile(r",\s*(?:and\s+)?|\s+and\s+")
_END_PUNCTUATION = ".!?;:,"
MIN_WORDS_TO_TRUNCATE = 4


def find_constraint(instruction: str) -> tuple[str, int | None] | None:
    """The explicit constraint an instruction states, as (kind, n), or None."""
    for kind, pattern in CONSTRAINT_PATTERNS:
        match = pattern.search(instruction)
        if match:
            if kind == "n_items":
                word = next(group for group in match.groups() if group)
                return kind, _COUNT_WORDS[word.casefold()]
            return kind, None
    return None


def missing_end(example: SFTExample) -> str:
    return " " + example.response


def runaway(example: SFTExample, next_instruction: str, next_response: str | None) -> str:
    """The answer, then the model writing the next exchange itself."""
    text = f" {example.response}\n{INSTRUCTION_TAG} {next_instruction}"
    return text + (f"\n{RESPONSE_TAG} {next_response}" if next_response else "")


def truncated(example: SFTExample, rng: random.Random) -> str | None:
    """The answer cut after 30-70% of its words, end punctuation stripped, then ``END``."""
    words = example.response.split(" ")
    if len(words) < MIN_WORDS_TO_TRUNCATE or "\n" in example.response:
        return None
    low = max(1, round(len(words) * 0.3))
    high = max(low, min(len(words) - 1, round(len(words) * 0.7)))
    kept = " ".join(words[: rng.randint(low, high)]).rstrip(_END_PUNCTUATION + " ")
    return render_completion(kept) if kept else None


def _items(response: str) -> tuple[list[str], str] | None:
    lines = [line for line in response.split("\n") if line.strip()]
    if len(lines) > 1 and all(_LIST_LINE.match(line) for line in lines):
        return lines, "\n"
    if len(lines) == 1:
        core = response.strip().rstrip(".")
        parts = [part for part in _INLINE_ITEMS.split(core) if part.strip()]
        if len(parts) > 1:
            return parts, ", "
    return None


def ignoring_constraint(example: SFTExample, kind: str, n: int | None, rng: random.Random) -> str | None:
    """An answer that ignores the instruction's constraint, or None when it cannot be built."""
    answer = example.response.strip()
    bare = answer.rstrip(_END_PUNCTUATION)
    if kind == "one_word":
        text = rng.choice(templates.ONE_WORD_WRAPPERS).format(answer=bare)
    elif kind == "number":
        text = rng.choice(templates.NUMBER_WRAPPERS).format(answer=bare)
    elif kind == "one_sentence":
        text = f"{answer if answer[-1] in '.!?' else answer + '.'} {rng.choice(templates.EXTRA_SENTENCES)}"
    elif kind == "yes_no":
        text = _without_yes_no(answer, rng)
    else:
        text = _one_item_short(answer, n)
    return render_completion(text) if text and text != answer else None


def _without_yes_no(answer: str, rng: random.Random) -> str | None:
    match = re.match(r"^(yes|no)\b[,.!]?\s*", answer, re.IGNORECASE)
    if not match:
        return None
    rest = answer[match.end() :]
    if rest:
        return rest[0].upper() + rest[1:]
    return rng.choice(templates.AFFIRMATIONS if match.group(1).casefold() == "yes" else templates.DENIALS)


def _one_item_short(answer: str, n: int | None) -> str | None:
    found = _items(answer)
    if found is None or n is None or len(found[0]) != n:
        return None
    items, separator = found
    kept = items[:-1]
    if separator == "\n":
        return "\n".join(kept)
    text = kept[0] if len(kept) == 1 else ", ".join(kept[:-1]) + " and " + kept[-1]
    return text + "." if answer.endswith(".") else text
