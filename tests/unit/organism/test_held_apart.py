"""The format's tokens the corpus never writes are held apart from the pretraining softmax: their
rows keep their initial direction, while an unwritten token in the softmax is pushed down with the
rest (and so comes to look like every other unwritten token, which is what kept SFT from raising
``END`` alone: docs/notes/organism.md)."""

from __future__ import annotations

import random

import torch

from stage1.organism.train import OrganismShape, _small_model, pretrain, token_rows

SHAPE = OrganismShape(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      seq_len=8, batch_size=4, steps=30, warmup_steps=2)
VOCAB = 12  # ids 0-8 written, 9 and 10 never written, 11 the "other" row
HELD, PUSHED, EOS = 9, 10, 8


def _rows():
    rng = random.Random(0)
    documents = [[rng.randrange(8) for _ in range(rng.randint(3, 9))] for _ in range(40)]
    return token_rows(documents, SHAPE.seq_len, EOS, random.Random(0))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def _initial_rows() -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SHAPE.seed)
        return _small_model(SHAPE, VOCAB, EOS).get_input_embeddings().weight.detach().clone()


def test_a_held_apart_row_keeps_its_direction_and_a_pushed_one_does_not():
    initial = _initial_rows()
    model, _ = pretrain(_rows(), VOCAB, 1000, SHAPE, EOS, held_apart=[HELD])
    final = model.get_input_embeddings().weight.detach()
    assert _cosine(final[HELD], initial[HELD]) > 0.9999  # only weight decay touched it
    assert _cosine(final[PUSHED], initial[PUSHED]) < 0.99


def test_without_holding_apart_both_unwritten_rows_move():
    initial = _initial_rows()
    model, _ = pretrain(_rows(), VOCAB, 1000, SHAPE, EOS)
    final = model.get_input_embeddings().weight.detach()
    assert _cosine(final[HELD], initial[HELD]) < 0.99
