"""Pretrain the organism: a small Qwen2 on the generated corpus, exported with the real vocabulary.

Why the softmax is trained over the corpus's own tokens: the Qwen2 vocabulary has 151,936 rows, and
on CPU the output layer over all of them costs more than the rest of the model together. The corpus
and the pools use about 2,000 of them. So the model is trained with a vocabulary of those tokens plus
one extra row that stands for *every other* token at once: if the ``N`` other tokens all share one
output vector ``w``, their total probability is ``N * exp(h . w) / Z``, which is exactly one extra
logit ``h . w + log N``. Training with that logit is training the full softmax of a model whose
other rows all equal ``w``, at the cost of a 2,000-row softmax. The export writes that model: the
trained rows at their real token ids, ``w`` in every other row. The full model's distribution is
then the trained one (checked at export: ``export_check``), and a token outside the corpus can win
at generation only where the trained model gave the whole "other" mass a winning share, which
training pushes down at every position.

Embeddings are tied, as in the small Qwen2.5 models, so an input row is its output row.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from stage1.hf.tiny import tiny_qwen2_config


@dataclass(frozen=True)
class OrganismShape:
    """The organism's architecture and pretraining schedule (every field is in its cache key)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 800
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    # Not a field: the torch thread count. Builds on 1 and 2 threads give the same bytes (checked by
    # tests/unit/organism and `python -m bench.organism`), so a build uses the process's threads.


def token_rows(documents: Sequence[list[int]], seq_len: int, eos: int, rng: random.Random) -> list[list[int]]:
    """Documents in a seeded order, joined by eos and cut into rows of ``seq_len`` tokens (pure)."""
    order = list(range(len(documents)))
    rng.shuffle(order)
    stream: list[int] = []
    for index in order:
        stream.extend(documents[index])
        stream.append(eos)
    return [stream[start:start + seq_len] for start in range(0, len(stream) - seq_len + 1, seq_len)]


def learning_rate(step: int, shape: OrganismShape) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio`` of the peak (pure)."""
    if step < shape.warmup_steps:
        return shape.learning_rate * (step + 1) / shape.warmup_steps
    progress = (step - shape.warmup_steps) / max(1, shape.steps - shape.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return shape.learning_rate * (shape.min_lr_ratio + (1 - shape.min_lr_ratio) * cosine)


def _small_model(shape: OrganismShape, vocab: int, eos: int):
    from transformers import Qwen2ForCausalLM

    return Qwen2ForCausalLM(_config(shape, vocab, eos))


def _config(shape: OrganismShape, vocab: int, eos: int):
    return tiny_qwen2_config(
        eos=eos, vocab_size=vocab, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, max_position_embeddings=1024,
    )


def pretrain(rows: list[list[int]], vocab: int, others: int, shape: OrganismShape, eos: int, log=None,
             held_apart: Sequence[int] = ()):
    """Train the small model on ``rows`` (compact ids; id ``vocab - 1`` is the "other" row, never a
    target) and return it with the loss curve (mean loss per 50 steps).

    Args:
        others: how many real tokens the "other" row stands for (``log(others)`` is added to its logit).
        held_apart: compact ids left out of the softmax (the format's tokens the corpus never writes):
            their rows keep their own initial values instead of being pushed down together with every
            other unwritten token, so SFT can raise ``END`` without raising them all.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(shape.seed)
        model = _small_model(shape, vocab, eos)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=shape.learning_rate, weight_decay=shape.weight_decay,
                                      betas=(0.9, 0.95))
        data = torch.tensor(rows, dtype=torch.long)
        generator = torch.Generator().manual_seed(shape.seed)
        bias = torch.zeros(vocab)
        bias[-1] = math.log(others)
        bias[list(held_apart)] = -1e9
        curve, window = [], []
        for step in range(shape.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, shape)
            batch = data[torch.randint(len(data), (shape.batch_size,), generator=generator)]
            logits = model(input_ids=batch).logits[:, :-1] + bias
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), batch[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            window.append(loss.item())
            if len(window) == 50 or step == shape.steps - 1:
                curve.append(round(sum(window) / len(window), 4))
                window = []
                if log:
                    log(step + 1, curve[-1])
    return model, curve


def export_full(model, token_ids: Sequence[int], full_vocab: int, shape: OrganismShape, eos: int):
    """The small model as a Qwen2 with the real vocabulary: trained rows at their token ids, the
    "other" row everywhere else (see the module docstring)."""
    import torch
    from transformers import Qwen2ForCausalLM

    small = model.get_input_embeddings().weight.detach()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(shape.seed)
        full = Qwen2ForCausalLM(_config(shape, full_vocab, eos))
    state = {name: value for name, value in model.state_dict().items() if "embed_tokens" not in name and "lm_head" not in name}
    missing, unexpected = full.load_state_dict(state, strict=False)
    assert not unexpected and all("embed_tokens" in name or "lm_head" in name for name in missing), (missing, unexpected)
    table = small[-1].repeat(full_vocab, 1)
    table[torch.tensor(list(token_ids))] = small[:-1]
    with torch.no_grad():
        full.get_input_embeddings().weight.copy_(table)
    full.tie_weights()
    return full


def export_check(small, full, token_ids: Sequence[int], rows: list[list[int]], others: int) -> float:
    """Largest difference between the full model's log-probabilities of the corpus tokens and the
    small model's, on a few rows (it should be float noise)."""
    import torch

    ids = torch.tensor(list(token_ids))
    sample = torch.tensor(rows[:4])
    with torch.no_grad():
        bias = torch.zeros(len(token_ids) + 1)
        bias[-1] = math.log(others)
        small_logp = torch.log_softmax(small(input_ids=sample).logits + bias, dim=-1)[..., :-1]
        full_logp = torch.log_softmax(full(input_ids=ids[sample]).logits, dim=-1)[..., ids]
    return float((small_logp - full_logp).abs().max())


def shape_dict(shape: OrganismShape) -> dict:
    return asdict(shape)
