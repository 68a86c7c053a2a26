"""The tiny-Qwen harness: offline, deterministic, real vocabulary."""

from __future__ import annotations

import json

import pytest
import torch

from stage1.hf.tiny import build_tiny_qwen
from stage1.io.hashing import sha256_file


def test_tiny_model_loads_offline_with_the_real_tokenizer(tiny_model_dir, qwen_tokenizer, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size == 151936
    assert qwen_tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    assert qwen_tokenizer.eos_token_id == qwen_tokenizer.pad_token_id == 151643
    assert qwen_tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [151644, 151645]
    assert (tiny_model_dir / "model.safetensors").is_file()
    assert not list(tiny_model_dir.glob("*.bin"))
    recorded = json.loads((tiny_model_dir / "config.json").read_text())["stage1_tiny"]
    assert recorded["shape"]["hidden_size"] == 64 and recorded["shape"]["num_hidden_layers"] == 2


@pytest.mark.slow
def test_same_seed_same_bytes_and_global_rng_untouched(tiny_model_dir, tmp_path):
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    again = build_tiny_qwen(tmp_path / "again", seed=0)
    assert torch.equal(torch.rand(3), expected_next), "building the model must not consume the global RNG"
    assert sha256_file(again / "model.safetensors") == sha256_file(tiny_model_dir / "model.safetensors")
    other = build_tiny_qwen(tmp_path / "other", seed=1)
    assert sha256_file(other / "model.safetensors") != sha256_file(tiny_model_dir / "model.safetensors")


def test_every_special_token_can_be_predicted(tiny_model_dir):
    """The eos row of the tied embedding is not zero: a zero row gives eos the logit 0 for every
    input, and the model could never learn to stop after END (pad_token_id zeroes it at init)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = model.get_output_embeddings().weight
    typical = rows.norm(dim=1).median()
    for token_id in (151643, 151644, 151645):
        assert rows[token_id].norm() > 0.5 * typical, f"output row {token_id} is (nearly) zero"
    assert model.config.pad_token_id is None
