"""Filters for SFT responses, each one counted: what was dropped, why, out of how many generated.

Row filters, checked in this order (a row is counted under the first reason that drops it):

- ``empty``: nothing before the stop;
- ``runaway``: the raw text went on into a new ``Instruction:`` (measured on the raw text, so it
  is counted even when the answer before it would survive; ``keep_rescued_runaways`` keeps that
  answer and still counts the runaway under ``runaway_raw``);
- ``max_tokens``: the token limit was hit without an END or eos (the answer may be cut);
- ``truncated``: the answer stops on a dangling colon or inside an unclosed code fence. Short
  answers are not truncations: "Paris." and "4" are complete;
- ``format_refused``: the response holds a line the format cannot carry (``END`` alone, a line
  starting with ``Response:``);
- ``special_token_text``: the response holds control-token text such as ``<|endoftext|>``, which
  ``records`` refuses, so the SFT stage could not read the row back;
- ``refusal``: the response is a refusal by ``criteria.is_refusal``, the definition evaluation
  scores (so "I cannot stress this enough: ..." and "I'm sorry to hear that. ..." are answers), or
  one of the configured extra ``refusal_phrases`` opens a sentence.

Dataset filters, applied after the row filters in input order:

- ``duplicate``: the same (instruction, response) after ``text_keys.dedup_key``;
- ``per_instruction_cap``: more than ``max_per_instruction`` responses for one normalised
  instruction, across the whole dataset (not per file or per batch).

Rates divide by the number generated, never by the rows that survived filtering.

Pure: records and strings only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stage1.core.criteria import is_refusal
from stage1.core.format import STOP_MAX_TOKENS, FormatError, check_text
from stage1.core.records import SPECIAL_TOKEN_TEXT, SFTExample
from stage1.core.text_keys import dedup_key

DROP_EMPTY = "empty"
DROP_RUNAWAY = "runaway"
DROP_MAX_TOKENS = "max_tokens"
DROP_TRUNCATED = "truncated"
DROP_FORMAT = "format_refused"
DROP_SPECIAL_TOKEN = "special_token_text"
DROP_REFUSAL = "refusal"
DROP_DUPLICATE = "duplicate"
DROP_CAP = "per_instruction_cap"
DROP_REASONS = (
    DROP_EMPTY, DROP_RUNAWAY, DROP_MAX_TOKENS, DROP_TRUNCATED, DROP_FORMAT, DROP_SPECIAL_TOKEN, DROP_REFUSAL,
    DROP_DUPLICATE, DROP_CAP,
)


@dataclass(frozen=True)
class Candidate:
    """A response before filtering, from the instruction file or from the model."""

    id: str
    instruction: str
    category: str
    response: str
    source: str
    stop_reason: str | None = None
    runaway: bool = False
    num_tokens: int | None = None

    def to_example(self) -> SFTExample:
        return SFTExample(
            id=self.id,
            instruction=self.instruction,
            response=check_text(self.response, "response"),
            category=self.category,
            source=self.source,
            stop_reason=self.stop_reason,
            num_tokens=self.num_tokens,
        )


def compile_refusal_pattern(phrases: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for extra refusal phrases, each anchored at a sentence start and ending at a word boundary.

    Matched case-insensitively; curly apostrophes count as straight ones. None when there are none.
    """
    cleaned = [phrase.replace("\u2019", "'").strip() for phrase in phrases if phrase.strip()]
    if not cleaned:
        return None
    alternatives = "|".join(re.escape(phrase) + (r"\b" if phrase[-1].isalnum() else "") for phrase in cleaned)
    return re.compile(rf"(?:^|[.!?]\s+|\n\s*)(?:{alternatives})", re.IGNORECASE)


def refusal_phrase(response: str, pattern: re.Pattern[str] | None) -> str | None:
    """The extra refusal phrase that opens a sentence of ``response``, or None."""
    if pattern is None:
        return None
    match = pattern.search(response.replace("\u2019", "'").replace("\u2018", "'"))
    return match.group(0).strip(" .!?\n") if match else None


def is_unwarranted_refusal(response: str, extra: re.Pattern[str] | None) -> bool:
    """A refusal by evaluation's definition (``criteria.is_refusal``), or by an extra phrase."""
    return is_refusal(response) or refusal_phrase(response, extra) is not None


def looks_truncated(response: str) -> bool:
    """True when the answer ends on a colon (a list or code that never came) or leaves a code fence open."""
    return response.rstrip().endswith(":") or response.count("```") % 2 == 1


def row_drop_reason(candidate: Candidate, pattern: re.Pattern[str] | None, keep_rescued_runaways: bool) -> str | None:
    """Why a single row is dropped (the first applicable reason), or None to keep it."""
    if not candidate.response.strip():
        return DROP_EMPTY
    if candidate.runaway and not keep_rescued_runaways:
        return DROP_RUNAWAY
    if candidate.stop_reason == STOP_MAX_TOKENS:
        return DROP_MAX_TOKENS
    if looks_truncated(candidate.response):
        return DROP_TRUNCATED
    try:
        check_text(candidate.response, "response")
    except FormatError:
        return DROP_FORMAT
    if SPECIAL_TOKEN_TEXT.search(candidate.response):
        return DROP_SPECIAL_TOKEN
    if is_unwarranted_refusal(candidate.response, pattern):
        return DROP_REFUSAL
    return None


@dataclass
class FilterResult:
    """Kept examples and the counts behind them."""

    kept: list[SFTExample]
    generated: int
    dropped: dict[str, int]
    runaway_raw: int
    stop_reasons: dict[str, int]
    first_dropped: dict[str, list[str]]

    def counts(self) -> dict[str, Any]:
        accepted = len(self.kept)
        return {
            "generated": self.generated,
            "accepted": accepted,
            "acceptance_rate": accepted / self.generated if self.generated else None,
            "dropped": dict(self.dropped),
            "drop_rates": {k: (v / self.generated if self.generated else None) for k, v in self.dropped.items()},
            "runaway_raw": self.runaway_raw,
            "runaway_rate": self.runaway_raw / self.generated if self.generated else None,
            "stop_reasons": dict(sorted(self.stop_reasons.items())),
            "examples_of_dropped": {k: v for k, v in self.first_dropped.items() if v},
        }


def filter_candidates(
    candidates: Iterable[Candidate],
    *,
    refusal_phrases: Sequence[str] = (),
    keep_rescued_runaways: bool = False,
    max_per_instruction: int = 1,
    examples_kept_per_reason: int = 3,
) -> FilterResult:
    """Apply the row filters, then de-duplication, then the per-instruction cap (see module docstring).

    Args:
        refusal_phrases: extra phrases that mark a refusal when one opens a sentence, on top of
            ``criteria.is_refusal`` (which always applies).
    """
    pattern = compile_refusal_pattern(refusal_phrases)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    first: dict[str, list[str]] = {reason: [] for reason in DROP_REASONS}
    stop_reasons: Counter[str] = Counter()
    seen_pairs: set[tuple[str, str]] = set()
    per_instruction: Counter[str] = Counter()
    kept: list[SFTExample] = []
    generated = runaway_raw = 0

    def drop(reason: str, candidate: Candidate) -> None:
        dropped[reason] += 1
        if len(first[reason]) < examples_kept_per_reason:
            first[reason].append(f"{candidate.id}: {candidate.response[:120]!r}")

    for candidate in candidates:
        generated += 1
        runaway_raw += int(candidate.runaway)
        stop_reasons[candidate.stop_reason or "supplied"] += 1
        reason = row_drop_reason(candidate, pattern, keep_rescued_runaways)
        if reason is not None:
            drop(reason, candidate)
            continue
        instruction_key = dedup_key(candidate.instruction)
        pair_key = (instruction_key, dedup_key(candidate.response))
        if pair_key in seen_pairs:
            drop(DROP_DUPLICATE, candidate)
            continue
        seen_pairs.add(pair_key)
        if per_instruction[instruction_key] >= max_per_instruction:
            drop(DROP_CAP, candidate)
            continue
        per_instruction[instruction_key] += 1
        kept.append(candidate.to_example())
    return FilterResult(kept, generated, dropped, runaway_raw, dict(stop_reasons), first)
