"""The paired bootstrap of ``stage1.core.stats.paired_bootstrap``, drawn with numpy: the same numbers.

The pure version draws each resampled index in Python (``random.Random(seed).choices``): 1,000
resamples of 1,024 items are a million draws per (comparison, criterion), which made the paired
statistics most of ``stage1 score``'s time on a sweep of many variants. numpy's legacy
``RandomState`` runs the same Mersenne Twister and makes a double from two 32-bit words the same way
as ``random.random()`` (``(a >> 5) * 2**26 + (b >> 6)``, over ``2**53``), so loaded with the Python
generator's state it yields the same stream, and ``floor(u * n)`` the same indices: the interval is
bit-for-bit the pure one (a test compares them), at numpy's speed. The core stays free of numpy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from stage1.core.stats import BootstrapResult, paired_bootstrap, percentile

#: Resamples drawn per numpy call: bounds the index matrix to CHUNK x n (8 bytes each).
CHUNK_DRAWS = 1 << 20


def _numpy_generator(seed: int) -> np.random.RandomState:
    """A RandomState in exactly the state ``random.Random(seed)`` starts in."""
    version, words, _ = random.Random(seed).getstate()
    generator = np.random.RandomState()
    generator.set_state(("MT19937", np.array(words[:-1], dtype=np.uint32), words[-1]))
    return generator


def fast_paired_bootstrap(before: Sequence[int | bool] | np.ndarray, after: Sequence[int | bool] | np.ndarray, *, samples: int, seed: int,
                          confidence: float = 0.95) -> BootstrapResult:
    """``paired_bootstrap(before, after, ...)``, the same result, drawn in numpy (0/1 outcomes as
    sequences or arrays).

    Raises:
        ValueError: as ``paired_bootstrap``.
    """
    if len(before) != len(after) or len(before) == 0 or samples < 1:
        return paired_bootstrap(list(before), list(after), samples=samples, seed=seed, confidence=confidence)  # its own errors
    n = len(before)
    differences = np.asarray(after, dtype=np.int8) - np.asarray(before, dtype=np.int8)
    generator = _numpy_generator(seed)
    per_chunk = max(1, CHUNK_DRAWS // n)
    sums = []
    for start in range(0, samples, per_chunk):
        rows = min(per_chunk, samples - start)
        # u * n lies in [0, n): truncating is floor, as random.choices takes it
        indices = (generator.random_sample((rows, n)) * float(n)).astype(np.intp)
        sums.append(differences.take(indices).sum(axis=1, dtype=np.int64))
    # sums are integers below 2**53: as doubles exact, and the division rounds as Python's int / int does
    lifts = (np.sort(np.concatenate(sums)) / n).tolist()
    alpha = 1 - confidence
    return BootstrapResult(lift=int(differences.sum()) / n, low=percentile(lifts, alpha / 2), high=percentile(lifts, 1 - alpha / 2),
                           samples=samples, seed=seed, confidence=confidence)
