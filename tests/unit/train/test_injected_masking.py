"""Loss on the prompt tokens, injected into SFT's masks at ``build_sft_features``: the fast tier's
masking tests fail on it (the bug no runtime check of the run or golden gate saw on the random
model, where it raised the rates)."""

from __future__ import annotations

import dataclasses

import pytest

from stage1.core.masking import build_sft_features
from tests.unit.core import test_masking as masking_tests


def prompt_trained(tokenizer, instruction: str, response: str, max_length: int):
    """The bug: labels copy every input id, the prompt's included."""
    features = build_sft_features(tokenizer, instruction, response, max_length)
    return dataclasses.replace(features, labels=list(features.input_ids))


@pytest.mark.parametrize("masking_test", [
    masking_tests.test_documented_example_ids,
    masking_tests.test_instruction_containing_response_colon_is_fully_masked,
])
def test_loss_on_prompt_tokens_fails_the_fast_masking_tests(qwen_tokenizer, monkeypatch, masking_test):
    masking_test(qwen_tokenizer)  # passes on the real masks
    monkeypatch.setattr(masking_tests, "build_sft_features", prompt_trained)
    with pytest.raises(AssertionError):
        masking_test(qwen_tokenizer)


def test_the_sft_rows_handed_to_trl_carry_the_injected_labels(qwen_tokenizer, monkeypatch):
    """The injection point is the one SFT's rows are built through (so the tests above test SFT)."""
    from stage1.core.records import SFTExample
    from stage1.train import data

    example = SFTExample(id="r0", instruction="What is the capital of France?", response="Paris.")
    clean = data.build_sft_rows(qwen_tokenizer, [example], max_length=64, overlong="error", source="train.jsonl").rows[0]
    assert clean["labels"][0] == -100
    monkeypatch.setattr(data, "build_sft_features", prompt_trained)
    injected = data.build_sft_rows(qwen_tokenizer, [example], max_length=64, overlong="error", source="train.jsonl").rows[0]
    assert injected["labels"] == injected["input_ids"]
