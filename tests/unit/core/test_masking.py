"""Response-only masking on the real Qwen2 tokenizer, at every boundary."""

from __future__ import annotations

import pytest
from hypothesis import given

from stage1.core.format import FormatError, render_completion, render_prompt
from stage1.core.masking import (
    IGNORE_INDEX,
    OVERLONG_PROMPT,
    OVERLONG_ROW,
    MaskingError,
    build_sft_features,
    encode_text,
    eos_token_id,
    sequence_length,
    supervised_ids,
)
from tests.strategies import format_text

EOS = 151643
MAX = 4096


def _decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_documented_example_ids(qwen_tokenizer):
    features = build_sft_features(qwen_tokenizer, "What is the capital of France?", "Paris is the capital.", MAX)
    prompt = [16664, 25, 3555, 374, 279, 6722, 315, 9625, 5267, 2582, 25]
    completion = [12095, 374, 279, 6722, 624, 4689, EOS]
    assert features.input_ids == prompt + completion
    assert features.labels == [IGNORE_INDEX] * len(prompt) + completion
    assert features.attention_mask == [1] * len(prompt + completion)
    assert features.prompt_length == len(prompt)


def test_instruction_containing_response_colon_is_fully_masked(qwen_tokenizer):
    """Open-instruct style marker: no token of the prompt is ever trained, even 'Response:' inside it."""
    instruction = "Explain what 'Response: MARKERZZ' means in a log line."
    features = build_sft_features(qwen_tokenizer, instruction, "It is a label.", MAX)
    trained = _decode(qwen_tokenizer, supervised_ids(features))
    assert "MARKERZZ" not in trained
    assert trained == " It is a label.\nEND<|endoftext|>"


def test_special_token_text_in_data_stays_text(qwen_tokenizer):
    features = build_sft_features(qwen_tokenizer, "Say <|endoftext|> or <|im_start|>", "<|im_end|> ok", MAX)
    assert features.input_ids.count(EOS) == 1 and features.input_ids[-1] == EOS
    assert 151644 not in features.input_ids and 151645 not in features.input_ids


def test_prompt_ending_in_a_space_is_not_prefix_stable(qwen_tokenizer):
    """Why the prompt ends at the colon: 'Response: ' + 'Paris' tokenizes differently from the whole."""
    bad_prompt, word = "Instruction: Capital of France?\nResponse: ", "Paris"
    assert encode_text(qwen_tokenizer, bad_prompt) + encode_text(qwen_tokenizer, word) != encode_text(
        qwen_tokenizer, bad_prompt + word
    )
    good_prompt, completion = render_prompt("Capital of France?"), render_completion("Paris")
    assert encode_text(qwen_tokenizer, good_prompt) + encode_text(qwen_tokenizer, completion) == encode_text(
        qwen_tokenizer, good_prompt + completion
    )


@given(instruction=format_text, response=format_text)
def test_mask_invariants_over_arbitrary_unicode(qwen_tokenizer, instruction, response):
    """Property: supervised tokens decode to the completion + eos; masked tokens decode to the prompt;
    separate tokenization equals joint tokenization (the colon boundary is prefix-stable)."""
    features = build_sft_features(qwen_tokenizer, instruction, response, MAX)
    supervised = supervised_ids(features)
    assert _decode(qwen_tokenizer, supervised) == render_completion(response) + "<|endoftext|>"
    prompt_ids = features.input_ids[: features.prompt_length]
    assert _decode(qwen_tokenizer, prompt_ids) == render_prompt(instruction)
    assert all(label == IGNORE_INDEX for label in features.labels[: features.prompt_length])
    assert features.labels[features.prompt_length :] == features.input_ids[features.prompt_length :]
    joint = encode_text(qwen_tokenizer, render_prompt(instruction) + render_completion(response))
    assert joint + [EOS] == features.input_ids
    assert features.input_ids.count(EOS) == 1


def test_overlong_prompt_raises(qwen_tokenizer):
    with pytest.raises(MaskingError) as caught:
        build_sft_features(qwen_tokenizer, "word " * 50, "short", 20)
    assert caught.value.reason == OVERLONG_PROMPT


def test_overlong_row_raises_instead_of_dropping_end(qwen_tokenizer):
    with pytest.raises(MaskingError) as caught:
        build_sft_features(qwen_tokenizer, "Short?", "word " * 50, 30)
    assert caught.value.reason == OVERLONG_ROW


def test_row_that_fits_exactly_keeps_end_and_eos(qwen_tokenizer):
    full = build_sft_features(qwen_tokenizer, "Short?", "A short answer.", MAX)
    exact = build_sft_features(qwen_tokenizer, "Short?", "A short answer.", len(full.input_ids))
    assert exact == full
    assert _decode(qwen_tokenizer, supervised_ids(exact)).endswith("\nEND<|endoftext|>")
    with pytest.raises(MaskingError):
        build_sft_features(qwen_tokenizer, "Short?", "A short answer.", len(full.input_ids) - 1)


def test_refused_text_never_reaches_the_tokenizer(qwen_tokenizer):
    with pytest.raises(FormatError):
        build_sft_features(qwen_tokenizer, "Fine", "answer\nEND\nmore", MAX)


def test_max_length_below_two_is_refused_before_tokenizing(qwen_tokenizer):
    with pytest.raises(ValueError, match="max_length must be at least 2, got 1"):
        build_sft_features(qwen_tokenizer, "Short?", "Yes.", 1)
    with pytest.raises(MaskingError) as caught:  # 2 is a legal limit; this prompt alone is longer
        build_sft_features(qwen_tokenizer, "Short?", "Yes.", 2)
    assert caught.value.reason == OVERLONG_PROMPT


def test_a_prompt_of_exactly_max_length_tokens_leaves_no_room(qwen_tokenizer):
    """The prompt must leave at least one position: ``len(prompt) >= max_length`` is too long, and one
    position more is a row too long for the completion instead."""
    prompt = encode_text(qwen_tokenizer, render_prompt("What is the capital of France?"))
    assert len(prompt) == 11
    with pytest.raises(MaskingError, match="the prompt is 11 tokens, which leaves no room for a response "
                                           "within max_length=11") as caught:
        build_sft_features(qwen_tokenizer, "What is the capital of France?", "Paris is the capital.", 11)
    assert caught.value.reason == OVERLONG_PROMPT
    with pytest.raises(MaskingError, match=r"prompt \(11\) \+ completion with END and eos \(7\) = 18 tokens "
                                           r"exceeds max_length=12; truncating would drop END") as caught:
        build_sft_features(qwen_tokenizer, "What is the capital of France?", "Paris is the capital.", 12)
    assert caught.value.reason == OVERLONG_ROW
    assert len(build_sft_features(qwen_tokenizer, "What is the capital of France?", "Paris is the capital.", 18).input_ids) == 18


class _NoEos:
    eos_token_id = None


def test_a_tokenizer_without_eos_is_refused_not_guessed():
    with pytest.raises(MaskingError, match=r"^the tokenizer has no eos token; set eos_token \(Qwen2: <\|endoftext\|>\)$") as caught:
        eos_token_id(_NoEos())
    assert caught.value.reason == "no_eos"


def test_features_as_a_dict_are_the_three_columns_trl_reads(qwen_tokenizer):
    features = build_sft_features(qwen_tokenizer, "Short?", "Yes.", MAX)
    assert features.to_dict() == {
        "input_ids": features.input_ids, "labels": features.labels, "attention_mask": features.attention_mask
    }
    assert features.to_dict()["labels"][: features.prompt_length] == [IGNORE_INDEX] * features.prompt_length


class _AddsBos:
    """A tokenizer that, like Llama's, adds a BOS when asked for special tokens (Qwen2's adds none)."""

    def __call__(self, text, add_special_tokens=True, split_special_tokens=False):
        ids = [ord(ch) for ch in text] if split_special_tokens else [999]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def test_encode_text_adds_no_special_tokens_and_splits_special_token_text():
    assert encode_text(_AddsBos(), "ab") == [97, 98]


def test_the_mask_value_is_the_one_torch_cross_entropy_ignores():
    """-100 is ``ignore_index``'s default in torch (and what TRL's collators pad labels with)."""
    import torch

    assert IGNORE_INDEX == torch.nn.CrossEntropyLoss().ignore_index == -100


def test_overlong_reasons_are_the_documented_names():
    """The reasons are counted by name in the SFT stage's drop counts (docs/DESIGN.md)."""
    assert (OVERLONG_PROMPT, OVERLONG_ROW) == ("prompt_too_long", "row_too_long")


def test_a_sequence_is_prompt_completion_and_one_eos(qwen_tokenizer):
    features = build_sft_features(qwen_tokenizer, "What is the capital of France?", "Paris is the capital.", MAX)
    assert sequence_length(11, 6) == 18 == len(features.input_ids)
    assert sequence_length(0, 0) == 1
