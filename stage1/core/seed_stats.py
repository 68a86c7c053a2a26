"""Lifts across training seeds: a paired comparison repeated on the same items for several seeds.

One training run is one draw of the training noise. With ``S`` seeds evaluated on the same ``I``
items, the outcomes form a crossed design: ``d[s][i]`` = after − before (−1, 0 or 1) for seed
``s`` and item ``i``. Its mean lift varies with the seeds drawn *and* with the items drawn, so its
variance is estimated with both (the pigeonhole estimator of Owen 2007 for crossed random
effects): ``var(seed means) / S + var(item means) / I``, sample variances of the per-seed means
over items and of the per-item means over seeds. It counts the interaction term twice, so it errs
on the wide side. The interval is the mean ± ``t`` times its square root, ``t`` with Satterthwaite's
degrees of freedom for the two terms (about ``S − 1`` when training noise dominates: with few seeds
it is estimated from few values; about ``I − 1`` when the seeds agree), clipped to [−1, 1]. The
test of "no lift" is the same statistic: ``t = mean / sqrt(variance)`` against Student's t with
those degrees of freedom (``t_two_sided_p``, exact for whole degrees of freedom), so the p-value is
below ``1 − confidence`` exactly when the interval leaves 0 out (up to the quantile's approximation
in the third decimal). Pooling the ``S·I`` pairs as independent
(one McNemar on all of them) treats training noise as if it were item noise and is too narrow;
``tests/unit/core/test_seed_stats.py`` shows both by seeded simulation.

Pure: ``math`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from stage1.core.stats import normal_quantile


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, the Cornish–Fisher expansion
    (Abramowitz & Stegun 26.7.5) from 3 on, within 0.01 of the tables at 0.975.

    Raises:
        ValueError: ``p`` outside (0, 1) or ``df < 1``.
    """
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = normal_quantile(p)
    terms = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    )
    return z + sum(term / df ** (power + 1) for power, term in enumerate(terms))


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: the closed form for whole
    degrees of freedom (Abramowitz & Stegun 26.7.3 and 26.7.4), a finite sum of ``df / 2`` terms.

    Raises:
        ValueError: ``df < 1`` or ``t`` not a number.
    """
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if math.isnan(t):
        raise ValueError("t must be a number")
    if math.isinf(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        term, total = math.cos(theta), 0.0 if df == 1 else math.cos(theta)
        for k in range(3, df - 1, 2):  # cos θ (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + ...), up to cos^(df-2) θ
            term *= cos2 * (k - 1) / k
            total += term
        inside = 2 / math.pi * (theta + math.sin(theta) * total)
    else:
        term = total = 1.0
        for k in range(2, df - 1, 2):  # 1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ..., up to cos^(df-2) θ
            term *= cos2 * (k - 1) / k
            total += term
        inside = math.sin(theta) * total
    return min(1.0, max(0.0, 1.0 - inside))


@dataclass(frozen=True)
class SeedLift:
    """A lift over seeds and items: the mean, each seed's lift, their spread (sample sd), and the
    interval and two-sided p-value of "no lift" that account for both (see the module docstring)."""

    lift: float
    per_seed: tuple[float, ...]
    spread: float
    low: float
    high: float
    seeds: int
    items: int
    p_value: float = 1.0
    df: int = 1


def _variance(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return sum((value - mean) ** 2 for value in values) / (len(values) - 1)


def seed_lift(before: Sequence[Sequence[int | bool]], after: Sequence[Sequence[int | bool]], confidence: float = 0.95) -> SeedLift:
    """The lift of ``after`` over ``before`` across seeds: ``before[s][i]``, ``after[s][i]`` are
    the outcomes of seed ``s`` on item ``i`` (the same items, in the same order, for every seed).

    Raises:
        ValueError: fewer than 2 seeds or 2 items, or rows of different lengths.
    """
    if len(before) != len(after) or len(before) < 2:
        raise ValueError(f"need the same number of seeds on both sides, at least 2; got {len(before)} and {len(after)}")
    items = len(before[0])
    if items < 2 or any(len(row) != items for row in (*before, *after)):
        raise ValueError("every seed needs the same items, at least 2")
    d = [[int(b) - int(a) for a, b in zip(row_before, row_after)] for row_before, row_after in zip(before, after)]
    seeds = len(d)
    per_seed = tuple(sum(row) / items for row in d)
    per_item = [sum(d[s][i] for s in range(seeds)) / seeds for i in range(items)]
    lift = sum(per_seed) / seeds
    seed_term, item_term = _variance(per_seed) / seeds, _variance(per_item) / items
    df = _degrees_of_freedom(seed_term, seeds, item_term, items)
    error = math.sqrt(seed_term + item_term)
    half = t_quantile(1 - (1 - confidence) / 2, df) * error
    if error > 0:
        p_value = t_two_sided_p(lift / error, df)
    else:  # every seed and item moved the same way: no noise to test against
        p_value = 1.0 if lift == 0 else 0.0
    return SeedLift(lift=lift, per_seed=per_seed, spread=math.sqrt(_variance(per_seed)), low=max(-1.0, lift - half),
                    high=min(1.0, lift + half), seeds=seeds, items=items, p_value=p_value, df=df)


def _degrees_of_freedom(seed_term: float, seeds: int, item_term: float, items: int) -> int:
    """Satterthwaite's degrees of freedom of the two-term variance, rounded down (at least 1): about
    ``seeds - 1`` when training noise dominates, about ``items - 1`` when it is absent."""
    denominator = seed_term**2 / (seeds - 1) + item_term**2 / (items - 1)
    if denominator == 0:
        return items - 1
    return max(1, math.floor((seed_term + item_term) ** 2 / denominator))
