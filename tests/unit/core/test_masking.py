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
