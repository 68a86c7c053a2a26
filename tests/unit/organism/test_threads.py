"""The organism's bytes do not depend on the torch thread count, so a build uses the process's
threads (every core for `run`, one per test worker) and the thread count stays out of the cache key."""

from __future__ import annotations

import hashlib
import random
from dataclasses import fields

import pytest
import torch

from stage1.organism.train import OrganismShape, pretrain, token_rows

# The default width and depth (the thread pools split these matmuls), a few steps only.
SHAPE = OrganismShape(steps=4, warmup_steps=1, batch_size=8)
VOCAB = 600


def _digest(threads: int) -> str:
    rng = random.Random(0)
    documents = [[rng.randrange(VOCAB - 2) for _ in range(rng.randint(20, 90))] for _ in range(60)]
    rows = token_rows(documents, SHAPE.seq_len, VOCAB - 2, random.Random(0))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, curve = pretrain(rows, VOCAB, 150_000, SHAPE, VOCAB - 2)
    finally:
        torch.set_num_threads(before)
    assert len(curve) == 1
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()


@pytest.mark.parametrize("threads", [2, 3])
def test_a_build_on_more_threads_gives_the_same_bytes(threads):
    assert _digest(threads) == _digest(1)


def test_the_thread_count_is_not_a_shape_setting():
    assert "threads" not in {field.name for field in fields(OrganismShape)}
