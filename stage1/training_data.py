"""Token-level training rows for SFT and DPO, with the overlong policy applied.

Pure apart from the tokenizer object, which is only called to encode. Rows are never truncated:
cutting a row's end drops ``END`` and the eos after it and teaches the model not to stop; a row that
does not fit is either an error (naming the file, line and field) or dropped and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage1.errors import InputError
from stage1.format import END_MARKER, INSTRUCTION_TAG, RESPONSE_TAG
from stage1.masking import MaskingError, build_sft_features, encode_text
from stage1.records import PreferencePair, SFTExample
from stage1.storage import iter_rows

log = logging.getLogger(__name__)

#: Used when max_length is None: TRL then applies no limit, and neither do we.
UNLIMITED = 1 << 30


def record_line(source: str | Path, index: int) -> int | None:
    """The line of the ``index``-th record of a file (records are read in order, one per non-blank line)."""
    for position, (line, _) in enumerate(iter_rows(source)):
        if position == index:
            return line
    return None


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
    """
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
                    line=record_line(source, index),
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
    extra: dict[str, Any] = field(default_factory=dict)


def check_pair_format(pair: PreferencePair, source: str | Path, index: int) -> None:
    """The prompt and chosen completion must be in the shared format byte for byte.

    Raises:
        InputError: naming the file, line and field.
    """
    problems = []
    if not pair.prompt.startswith(INSTRUCTION_TAG + " ") or not pair.prompt.endswith("\n" + RESPONSE_TAG):
        problems.append(("prompt", f"must read '{INSTRUCTION_TAG} ...\\n{RESPONSE_TAG}' and end at the colon"))
    if not pair.chosen.startswith(" ") or not pair.chosen.endswith("\n" + END_MARKER):
        problems.append(("chosen", f"must read ' <response>\\n{END_MARKER}'"))
    if problems:
        name, message = problems[0]
        raise InputError(message, path=source, line=record_line(source, index), field=name, hint="rebuild the pairs with stage1.pairs")


def build_preference_rows(tokenizer, pairs: list[PreferencePair], *, max_length: int | None, overlong: str, source: str | Path) -> PreferenceRows:
    """``prompt_ids``/``chosen_ids``/``rejected_ids`` (completions end with eos) for every pair.

    Raises:
        InputError: a pair not in the format, an overlong pair under ``overlong="error"``, or no
            pair left.
    """
    eos = int(tokenizer.eos_token_id)
    limit = UNLIMITED if max_length is None else max_length
    rows, kinds, dropped, tokens = [], [], [], 0
    for index, pair in enumerate(pairs):
        check_pair_format(pair, source, index)
        prompt = encode_text(tokenizer, pair.prompt)
        chosen = encode_text(tokenizer, pair.chosen) + [eos]
        rejected = encode_text(tokenizer, pair.rejected) + [eos]
        length = len(prompt) + max(len(chosen), len(rejected))
        if length > limit:
            if overlong == "error":
                raise InputError(
                    f"pair for instruction {pair.instruction_id!r} is {length} tokens, over dpo.max_length={limit}",
                    path=source,
                    line=record_line(source, index),
                    field="rejected" if len(rejected) > len(chosen) else "chosen",
                    hint="raise dpo.max_length, or set training.overlong: drop",
                )
            dropped.append(pair.instruction_id)
            continue
        rows.append({"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected})
        kinds.append(pair.negative_kind)
        tokens += len(prompt) * 2 + len(chosen) + len(rejected)
    if not rows:
        raise InputError("no pair left to train on", path=source, hint="check training.overlong and dpo.max_length")
    return PreferenceRows(rows, kinds, tuple(dropped), tokens)
