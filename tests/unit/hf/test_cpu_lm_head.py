"""TRL's fused LM head tuned for CPU gives the same log-probabilities, loss and gradients."""

import pytest
import torch
import trl.trainer.utils as trl_utils
from transformers import Qwen2Config, Qwen2ForCausalLM
from trl.trainer.utils import add_fused_lm_head

from stage1.hf import cpu_lm_head

VOCAB = 5000  # more than two CPU tiles, so tiles are stitched together


def _model():
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = Qwen2ForCausalLM(config)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    return model


def _batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, VOCAB, (3, 12), generator=generator)
    labels = input_ids.clone()
    labels[:, :5] = -100  # the instruction
    labels[1, 9:] = -100  # padding
    return input_ids, labels


def _forward_backward(model):
    model.zero_grad()
    input_ids, labels = _batch()
    out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.fixture
def restored(monkeypatch):
    """Whatever the test changes in TRL's module is put back afterwards."""
    monkeypatch.setattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE)
    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)


def test_tuned_head_gives_the_same_numbers_as_trls(restored):
    model = _model()
    before, grads_before = _forward_backward(model)
    assert cpu_lm_head.tune_for_cpu()
    assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == cpu_lm_head.CPU_TILE_VOCAB < VOCAB / 2
    assert trl_utils._use_triton(torch.device("cpu"))  # only supervised positions are scored now
    after, grads_after = _forward_backward(model)
    torch.testing.assert_close(after.log_probs, before.log_probs)
    torch.testing.assert_close(after.entropy, before.entropy)
    assert torch.equal(after.is_top1, before.is_top1)
    torch.testing.assert_close(after.loss, before.loss)
    assert grads_after.keys() == grads_before.keys() and grads_before
    for name, grad in grads_before.items():
        torch.testing.assert_close(grads_after[name], grad, msg=name)
    _, labels = _batch()
    assert (after.log_probs[labels[:, 1:] == -100] == 0).all()


def test_tuning_is_idempotent_and_leaves_other_devices_to_trl(restored):
    assert cpu_lm_head.tune_for_cpu() and cpu_lm_head.tune_for_cpu()
    assert trl_utils._use_triton(torch.device("meta")) is False  # TRL's own answer off CPU


def test_a_trl_without_the_names_is_left_as_it_ships(restored, monkeypatch):
    monkeypatch.setattr(cpu_lm_head, "_GPU_TILE_VOCAB", None)
    chunk = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    assert cpu_lm_head.tune_for_cpu() is False
    assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == chunk
