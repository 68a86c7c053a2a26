"""Lifts across training seeds: the interval accounts for seeds and items (seeded simulation), and
Student's t quantile is right."""

from __future__ import annotations

import math
import random

import pytest

from stage1.core.seed_stats import seed_lift, t_quantile
from stage1.core.stats import normal_quantile


@pytest.mark.parametrize(("df", "table"), [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_tables(df, table):
    assert t_quantile(0.975, df) == pytest.approx(table, abs=0.01)
    assert t_quantile(0.025, df) == pytest.approx(-table, abs=0.01)


def test_t_quantile_refuses_impossible_input():
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def _draw(rng: random.Random, seeds: int, items: int, seed_sd: float, lift: float):
    """Items of fixed ease p_i; each seed's training shifts the after rate by lift + N(0, seed_sd)."""
    ease = [rng.uniform(0.2, 0.8) for _ in range(items)]
    before, after = [], []
    for _ in range(seeds):
        shift = lift + rng.gauss(0, seed_sd)
        before.append([rng.random() < p for p in ease])
        after.append([rng.random() < min(1.0, max(0.0, p + shift)) for p in ease])
    return before, after


def _pooled_interval(before, after):
    """Every seed x item pair as if independent (one paired comparison on S x I pairs)."""
    d = [int(b) - int(a) for rb, ra in zip(before, after) for a, b in zip(rb, ra)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    half = normal_quantile(0.975) * sd / math.sqrt(len(d))
    return mean - half, mean + half


def test_the_interval_covers_a_null_lift_when_training_noise_varies_by_seed_and_pooling_does_not():
    """Three seeds, 200 items, no true lift, but each seed's training moves the rate by N(0, 10
    points): the seed-and-item interval covers 0 in at least 90% of 300 runs; pooling the 600
    pairs as independent covers it far less often (it reads training noise as a finding)."""
    rng = random.Random(23)
    covered = pooled = 0
    runs = 300
    for _ in range(runs):
        before, after = _draw(rng, seeds=3, items=200, seed_sd=0.1, lift=0.0)
        result = seed_lift(before, after)
        covered += result.low <= 0 <= result.high
        low, high = _pooled_interval(before, after)
        pooled += low <= 0 <= high
    assert covered / runs >= 0.9
    assert pooled / runs <= 0.75


def test_without_seed_noise_the_interval_still_covers_and_a_real_lift_is_found():
    rng = random.Random(29)
    covered = found = 0
    for _ in range(200):
        covered += seed_lift(*_draw(rng, seeds=3, items=200, seed_sd=0.0, lift=0.0)).low <= 0
        found += seed_lift(*_draw(rng, seeds=3, items=200, seed_sd=0.0, lift=0.2)).low > 0
    assert covered / 200 >= 0.9 and found / 200 >= 0.8


def test_seed_lift_reports_each_seed_the_mean_and_the_spread():
    before = [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
    after = [[1, 0, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]]
    result = seed_lift(before, after)
    assert result.per_seed == (0.25, 0.5, 0.0) and result.lift == pytest.approx(0.25)
    assert result.spread == pytest.approx(0.25) and result.low < 0.25 < result.high
    assert (result.seeds, result.items) == (3, 4)
    with pytest.raises(ValueError):
        seed_lift(before[:1], after[:1])
    with pytest.raises(ValueError):
        seed_lift(before, [row[:3] for row in after])
