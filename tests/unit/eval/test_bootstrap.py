"""The numpy paired bootstrap gives the pure one's result exactly, on any outcomes and seed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.stats import paired_bootstrap
from stage1.eval import bootstrap
from stage1.eval.bootstrap import fast_paired_bootstrap

outcomes = st.integers(1, 60).flatmap(lambda n: st.tuples(st.lists(st.booleans(), min_size=n, max_size=n),
                                                         st.lists(st.booleans(), min_size=n, max_size=n)))


@given(outcomes, st.integers(0, 2**64 - 1), st.integers(1, 300), st.sampled_from([0.9, 0.95]))
def test_the_numpy_bootstrap_is_the_pure_one(pair, seed, samples, confidence):
    before, after = pair
    assert fast_paired_bootstrap(before, after, samples=samples, seed=seed, confidence=confidence) == paired_bootstrap(
        before, after, samples=samples, seed=seed, confidence=confidence)


def test_drawing_in_chunks_changes_nothing(monkeypatch):
    before, after = [1, 0, 1, 1, 0, 0, 1] * 30, [1, 1, 1, 0, 0, 1, 1] * 30
    whole = fast_paired_bootstrap(before, after, samples=500, seed=7)
    monkeypatch.setattr(bootstrap, "CHUNK_DRAWS", 1000)  # four resamples a chunk
    assert fast_paired_bootstrap(before, after, samples=500, seed=7) == whole == paired_bootstrap(before, after, samples=500, seed=7)


def test_bad_inputs_raise_the_pure_errors():
    with pytest.raises(ValueError, match="equal lengths"):
        fast_paired_bootstrap([1, 0], [1], samples=10, seed=0)
    with pytest.raises(ValueError, match="samples must be at least 1"):
        fast_paired_bootstrap([1], [1], samples=0, seed=0)
