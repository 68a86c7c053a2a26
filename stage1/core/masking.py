"""Response-only SFT features: the loss falls on the completion and one eos token, nothing else.

Prompt and completion are tokenized separately and concatenated, so the boundary is known by
construction. Searching the ids for a tokenized ``"\\nResponse:"`` fails because the newline
merges with the character before it (``?\\n`` and ``.\\n`` are single tokens), and taking the
first ``Response`` ``:`` pair masks too little when the instruction itself contains ``Response:``.

Pure apart from the tokenizer object, which is only called to encode and decode.
"""

from __future__ import annotations

from dataclasses import dataclass

from stage1.core.format import render_completion, render_prompt

IGNORE_INDEX = -100

OVERLONG_PROMPT = "prompt_too_long"
OVERLONG_ROW = "row_too_long"


class MaskingError(ValueError):
    """A row that cannot be trained on without losing its supervision. ``reason`` names the case."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids for ``text`` with special-token text (``<|endoftext|>`` typed in data) kept as text.

    Every stage that turns format text into ids goes through here, so a user's string can never
    become a real control token.
    """
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def sequence_length(prompt_tokens: int, completion_tokens: int) -> int:
    """Tokens of one training sequence: the prompt, the completion and the eos after it.

    The one length every ``max_length`` limits: SFT rows, and each side of a preference pair (the
    pairs stage drops a pair whose longer side is over it; DPO refuses or drops it the same way).
    """
    return prompt_tokens + completion_tokens + 1


def eos_token_id(tokenizer) -> int:
    """The tokenizer's eos id; refuses a tokenizer without one rather than guessing."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise MaskingError("no_eos", "the tokenizer has no eos token; set eos_token (Qwen2: <|endoftext|>)")
    return int(eos)


@dataclass(frozen=True)
class SFTFeatures:
    """One training row. ``labels`` is -100 on every prompt token."""

    input_ids: list[int]
    labels: list[int]
    attention_mask: list[int]

    @property
    def prompt_length(self) -> int:
        return next(i for i, label in enumerate(self.labels) if label != IGNORE_INDEX)

    def to_dict(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels, "attention_mask": self.attention_mask}


def build_sft_features(tokenizer, instruction: str, response: str, max_length: int) -> SFTFeatures:
    """Input ids, labels and attention mask for one instruction/response pair.

    ``labels`` copies the ids of ``render_completion(response)`` plus one eos and is -100 on
    ``render_prompt(instruction)``. Rows are never truncated: cutting the end would drop ``END``
    and teach the model not to stop, and cutting the start would drop the boundary.

    Raises:
        FormatError: the instruction or response is refused by the format.
        MaskingError: ``prompt_too_long`` when the prompt alone leaves no room for a supervised
            token; ``row_too_long`` when prompt + completion + eos exceed ``max_length``. Callers
            choose to stop or to drop and count such rows (``overlong`` policy).
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    prompt_ids = encode_text(tokenizer, render_prompt(instruction))
    completion_ids = encode_text(tokenizer, render_completion(response)) + [eos_token_id(tokenizer)]
    if len(prompt_ids) >= max_length:
        raise MaskingError(
            OVERLONG_PROMPT,
            f"the prompt is {len(prompt_ids)} tokens, which leaves no room for a response within "
            f"max_length={max_length}",
        )
    total = len(prompt_ids) + len(completion_ids)
    if total > max_length:
        raise MaskingError(
            OVERLONG_ROW,
            f"prompt ({len(prompt_ids)}) + completion with END and eos ({len(completion_ids)}) = {total} "
            f"tokens exceeds max_length={max_length}; truncating would drop END",
        )
    input_ids = prompt_ids + completion_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    return SFTFeatures(input_ids=input_ids, labels=labels, attention_mask=[1] * len(input_ids))


def supervised_ids(features: SFTFeatures) -> list[int]:
    """The ids the loss falls on, in order."""
    return [label for label in features.labels if label != IGNORE_INDEX]
