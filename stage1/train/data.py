"""Token-level training rows for SFT and DPO, with the overlong policy applied.

Pure apart from the tokenizer object, which is only called to encode. Rows are never truncated:
cutting a row's end drops ``END`` and the eos after it and teaches the model not to stop; a row that
does not fit is either an error (naming the file, line and field) or dropped and counted; any other
``overlong`` value is a ``ValueError``. Pairs are checked against the shared format byte for byte
before they are tokenized (``check_pair_format``).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage1.core.errors import InputError
from stage1.core.format import END_MARKER, INSTRUCTION_TAG, RESPONSE_TAG, FormatError, render_completion, render_prompt
from stage1.core.masking import MaskingError, build_sft_features, encode_text, sequence_length
from stage1.core.records import PreferencePair, SFTExample, record_line

log = logging.getLogger(__name__)

#: Used when max_length is None: TRL then applies no limit, and neither do we.
UNLIMITED = 1 << 30

#: What happens to a row longer than max_length (``training.overlong``): stop, or drop and count.
OVERLONG_POLICIES = ("error", "drop")


def check_overlong_policy(overlong: str) -> None:
    """Refuse a policy other than ``OVERLONG_POLICIES`` (the config loader checks too; callers may not).

    Raises:
        ValueError: naming the allowed values.
    """
    if overlong not in OVERLONG_POLICIES:
        allowed = ", ".join(repr(policy) for policy in OVERLONG_POLICIES)
        raise ValueError(f"overlong must be one of {allowed}, got {overlong!r}")


@dataclass(frozen=True)
class SFTRows:
    """Features ready for TRL, and what the overlong policy dropped."""

    rows: list[dict[str, list[int]]]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    dropped_ids: tuple[str, ...] = ()
    supervised_tokens: int = 0
    total_tokens: int = 0


def build_sft_rows(tokenizer, examples: list[SFTExample], *, max_length: int | None, overlong: str, source: str | Path) -> SFTRows:
    """Response-only features for every example, with the overlong policy applied.

    Raises:
        InputError: an overlong row under ``overlong="error"`` (naming the file, line and id), or
            no row left to train on.
        ValueError: ``overlong`` is not one of ``OVERLONG_POLICIES``.
    """
    check_overlong_policy(overlong)
    limit = UNLIMITED if max_length is None else max_length
    rows, dropped, dropped_ids = [], {}, []
    supervised = total = 0
    for index, example in enumerate(examples):
        try:
            features = build_sft_features(tokenizer, example.instruction, example.response, limit)
        except MaskingError as error:
            if overlong == "error":
                raise InputError(
                    f"row id={example.id!r} is too long: {error}",
                    path=source,
                    line=record_line(examples, index),
                    field="response" if error.reason != "prompt_too_long" else "instruction",
                    hint="raise sft.max_length, shorten the row, or set training.overlong: drop",
                ) from None
            dropped[error.reason] = dropped.get(error.reason, 0) + 1
            dropped_ids.append(example.id)
            continue
        rows.append(features.to_dict())
        total += len(features.input_ids)
        supervised += len(features.input_ids) - features.prompt_length
    if not rows:
        raise InputError("no row left to train on", path=source, hint="check training.overlong and sft.max_length")
    if dropped:
        log.warning("dropped %d overlong rows (%s)", len(dropped_ids), dropped)
    return SFTRows(rows, dropped, tuple(dropped_ids), supervised, total)


@dataclass(frozen=True)
class PreferenceRows:
    """Tokenized pairs for TRL, their negative kinds (same order), and what the overlong policy dropped."""

    rows: list[dict[str, list[int]]]
    kinds: list[str]
    dropped_ids: tuple[str, ...] = ()
    tokens: int = 0
    sources: tuple[str, ...] = ()  # each row's negative source (rules / policy), same order
    indices: tuple[int, ...] = ()  # each row's position in the pairs it was built from, same order
    extra: dict[str, Any] = field(default_factory=dict)


_FORMAT_CAUSES = "'\\r\\n' line endings, text not in Unicode NFC, or spaces around the text"


def _first_difference(actual: str, expected: str, renderer: str) -> str:
    """Where ``actual`` stops matching what ``renderer`` makes of its text (``ascii`` snippets show NFC apart)."""
    position = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
    return (
        f"is not {renderer} of its text byte for byte: from character {position} it reads "
        f"{actual[position : position + 12]!a} where {expected[position : position + 12]!a} is rendered "
        f"(look for {_FORMAT_CAUSES})"
    )


def _rendered_problem(text: str, prefix: str, suffix: str, render: Callable[[str], str], renderer: str) -> str | None:
    """Why ``text`` is not ``render`` of the text between ``prefix`` and ``suffix``, or None."""
    if len(text) < len(prefix) + len(suffix) or not text.startswith(prefix) or not text.endswith(suffix):
        return f"must read {prefix + '...' + suffix!r}"
    inner = text[len(prefix) : len(text) - len(suffix)]
    try:
        expected = render(inner)
    except FormatError as error:
        return f"holds text the format refuses: {error.reason}"
    return None if expected == text else _first_difference(text, expected, renderer)


def pair_format_problem(pair: PreferencePair) -> tuple[str, str] | None:
    """The first (field, problem) that breaks the pair contract, or None (see ``check_pair_format``)."""
    problem = _rendered_problem(pair.prompt, f"{INSTRUCTION_TAG} ", f"\n{RESPONSE_TAG}", render_prompt, "render_prompt")
    if problem:
        return "prompt", problem
    problem = _rendered_problem(pair.chosen, " ", f"\n{END_MARKER}", render_completion, "render_completion")
    if problem:
        return "chosen", problem
    if pair.negative_kind != "format_violation" and pair.negative_source == "rules":
        problem = _rendered_problem(pair.rejected, " ", f"\n{END_MARKER}", render_completion, "render_completion")
        return ("rejected", problem) if problem else None
    if "\r" in pair.rejected:
        return "rejected", "holds a '\\r'; what a model writes is read back with '\\n' line endings"
    if unicodedata.normalize("NFC", pair.rejected) != pair.rejected:
        return "rejected", _first_difference(pair.rejected, unicodedata.normalize("NFC", pair.rejected), "Unicode NFC")
    return None


def check_pair_format(pair: PreferencePair, source: str | Path, line: int | None) -> None:
    """A pair must be in the shared format byte for byte, as ``stage1.pairs.stage`` writes it.

    ``prompt == render_prompt(instruction)`` and ``chosen == render_completion(response)`` for the
    instruction and response they carry, so ``\\r\\n``, non-NFC text, extra spaces, or an ``END``
    or tag line inside are refused. ``rejected == render_completion(text)`` too, except for
    ``format_violation`` negatives, which are malformed on purpose (no ``END``, a runaway into a
    new ``Instruction:``, a cut answer; ``records.NegativeRecord``), and policy negatives, which are
    what the SFT model wrote, as it wrote it: those need only be text a model could have written
    and been read back as, NFC with ``\\n`` line endings.

    Raises:
        InputError: naming the file, line and field.
    """
    problem = pair_format_problem(pair)
    if problem is not None:
        name, message = problem
        raise InputError(message, path=source, line=line, field=name, hint="rebuild the pairs with stage1.pairs.stage")


def build_preference_rows(tokenizer, pairs: list[PreferencePair], *, max_length: int | None, overlong: str, source: str | Path) -> PreferenceRows:
    """``prompt_ids``/``chosen_ids``/``rejected_ids`` (completions end with eos) for every pair.

    Raises:
        InputError: a pair not in the format, an overlong pair under ``overlong="error"``, or no
            pair left.
        ValueError: ``overlong`` is not one of ``OVERLONG_POLICIES``.
    """
    check_overlong_policy(overlong)
    eos = int(tokenizer.eos_token_id)
    limit = UNLIMITED if max_length is None else max_length
    rows, kinds, sources, indices, dropped, tokens = [], [], [], [], [], 0
    for index, pair in enumerate(pairs):
        check_pair_format(pair, source, record_line(pairs, index))
        prompt = encode_text(tokenizer, pair.prompt)
        chosen = encode_text(tokenizer, pair.chosen) + [eos]
        rejected = encode_text(tokenizer, pair.rejected) + [eos]
        length = max(sequence_length(len(prompt), len(chosen) - 1), sequence_length(len(prompt), len(rejected) - 1))
        if length > limit:
            if overlong == "error":
                raise InputError(
                    f"pair for instruction {pair.instruction_id!r} is {length} tokens, over dpo.max_length={limit}",
                    path=source,
                    line=record_line(pairs, index),
                    field="rejected" if len(rejected) > len(chosen) else "chosen",
                    hint="raise dpo.max_length, or set training.overlong: drop",
                )
            dropped.append(pair.instruction_id)
            continue
        rows.append({"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected})
        kinds.append(pair.negative_kind)
        sources.append(pair.negative_source)
        indices.append(index)
        tokens += len(prompt) * 2 + len(chosen) + len(rejected)
    if not rows:
        raise InputError("no pair left to train on", path=source, hint="check training.overlong and dpo.max_length")
    return PreferenceRows(rows, kinds, tuple(dropped), tokens, tuple(sources), indices=tuple(indices))
