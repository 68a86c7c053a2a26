"""The seed lift's test and interval, property by property: the t tail is exact and agrees with the
quantile, the p-value and the interval say the same thing, and neither depends on how the seeds or
items are ordered or which side is called before."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from stage1.core.seed_stats import seed_lift, t_quantile, t_two_sided_p


def _density(x: float, df: int) -> float:
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    return scale * (1 + x * x / df) ** (-(df + 1) / 2)


def _tail_by_integration(t: float, df: int, steps: int = 4000) -> float:
    """1 − 2 ∫₀ᵗ density: Simpson's rule, independent of the closed form under test."""
    h = t / steps
    inner = sum((4 if k % 2 else 2) * _density(k * h, df) for k in range(1, steps))
    return 1 - 2 * h / 3 * (_density(0.0, df) + inner + _density(t, df))


@given(st.floats(0.05, 8.0), st.integers(1, 60))
def test_the_t_tail_is_the_integral_of_the_density(t, df):
    assert t_two_sided_p(t, df) == pytest.approx(_tail_by_integration(t, df), abs=1e-7)


@pytest.mark.parametrize(("t", "df", "table"), [(2.0, 3, 0.1393), (2.306, 8, 0.05), (1.0, 1, 0.5), (3.0, 30, 0.00539)])
def test_the_t_tail_matches_the_tables(t, df, table):
    assert t_two_sided_p(t, df) == pytest.approx(table, abs=5e-4)


@given(st.floats(0.002, 0.5), st.integers(1, 400))
def test_the_tail_of_the_quantile_is_the_probability(p, df):
    """The interval uses ``t_quantile`` and the test ``t_two_sided_p``: they must agree, or an
    interval could leave 0 out while the test keeps it (exact for 1 and 2 degrees of freedom, the
    quantile's expansion from 3 on)."""
    assert t_two_sided_p(t_quantile(1 - p / 2, df), df) == pytest.approx(p, rel=0.05 if df < 5 else 0.01, abs=1e-6)


@given(st.floats(0.0, 50.0), st.floats(0.0, 50.0), st.integers(1, 200))
def test_the_tail_falls_as_t_grows_and_ignores_the_sign(a, b, df):
    low, high = sorted((a, b))
    assert t_two_sided_p(high, df) <= t_two_sided_p(low, df) + 1e-12
    assert t_two_sided_p(-a, df) == t_two_sided_p(a, df)
    assert t_two_sided_p(0.0, df) == 1.0 and 0.0 <= t_two_sided_p(a, df) <= 1.0


def test_the_tail_refuses_impossible_input():
    with pytest.raises(ValueError):
        t_two_sided_p(1.0, 0)
    with pytest.raises(ValueError):
        t_two_sided_p(math.nan, 3)
    assert t_two_sided_p(math.inf, 3) == 0.0


@st.composite
def _outcomes(draw):
    """``before[s][i]``, ``after[s][i]`` for 2-5 seeds and 2-40 items."""
    seeds, items = draw(st.integers(2, 5)), draw(st.integers(2, 40))
    grid = st.lists(st.lists(st.booleans(), min_size=items, max_size=items), min_size=seeds, max_size=seeds)
    return draw(grid), draw(grid)


@given(_outcomes())
def test_the_lift_is_the_mean_of_the_seeds_lifts_and_lies_in_its_interval(outcomes):
    before, after = outcomes
    lift = seed_lift(before, after)
    items = len(before[0])
    assert lift.per_seed == pytest.approx([(sum(a) - sum(b)) / items for b, a in zip(before, after)])
    assert lift.lift == pytest.approx(sum(lift.per_seed) / len(before))
    assert -1.0 <= lift.low <= lift.lift + 1e-12 and lift.lift - 1e-12 <= lift.high <= 1.0
    assert 0.0 <= lift.p_value <= 1.0 and lift.df >= 1


@given(_outcomes())
def test_swapping_the_sides_mirrors_the_lift_and_keeps_the_test(outcomes):
    before, after = outcomes
    forward, backward = seed_lift(before, after), seed_lift(after, before)
    assert backward.lift == pytest.approx(-forward.lift, abs=1e-12)
    assert backward.p_value == pytest.approx(forward.p_value, abs=1e-12)
    if -1.0 < forward.low and forward.high < 1.0:  # unclipped
        assert (backward.low, backward.high) == pytest.approx((-forward.high, -forward.low), abs=1e-12)


@given(_outcomes(), st.randoms(use_true_random=False))
def test_the_order_of_seeds_and_of_items_changes_nothing(outcomes, rng):
    before, after = outcomes
    seeds, items = list(range(len(before))), list(range(len(before[0])))
    rng.shuffle(seeds)
    rng.shuffle(items)
    shuffled = seed_lift([[before[s][i] for i in items] for s in seeds], [[after[s][i] for i in items] for s in seeds])
    plain = seed_lift(before, after)
    assert (shuffled.lift, shuffled.low, shuffled.high, shuffled.p_value) == pytest.approx(
        (plain.lift, plain.low, plain.high, plain.p_value), abs=1e-12)


@given(_outcomes(), st.sampled_from([0.9, 0.95, 0.99]))
def test_the_test_rejects_exactly_when_the_interval_leaves_zero_out(outcomes, confidence):
    before, after = outcomes
    lift = seed_lift(before, after, confidence)
    alpha = 1 - confidence
    assume(abs(lift.p_value - alpha) > 0.05 * alpha)  # the quantile's expansion is approximate right at the edge
    assume(-1.0 < lift.low and lift.high < 1.0)  # a clipped interval says less than the test
    assert (lift.p_value < alpha) == (lift.low > 0 or lift.high < 0)


def test_identical_sides_have_no_lift_and_a_constant_shift_is_certain():
    same = [[True, False, True], [False, False, True]]
    assert seed_lift(same, same).p_value == 1.0 and seed_lift(same, same).lift == 0.0
    never, always = [[False] * 4] * 3, [[True] * 4] * 3
    certain = seed_lift(never, always)
    assert certain.lift == 1.0 and certain.p_value == 0.0 and certain.low == certain.high == 1.0


def test_under_no_lift_with_seed_noise_the_test_rejects_at_about_its_level():
    """3 seeds x 200 items, no true lift, each seed's training moving the after rate by N(0, 10
    points): the seed-and-item test rejects at most 10% of 300 runs at alpha 0.05 (the interval's
    coverage, by the duality above; pooling the pairs fails it, ``test_seed_stats.py``)."""
    rng = random.Random(11)
    rejected = 0
    for _ in range(300):
        ease = [rng.uniform(0.2, 0.8) for _ in range(200)]
        before, after = [], []
        for _ in range(3):
            shift = rng.gauss(0, 0.10)
            before.append([rng.random() < p for p in ease])
            after.append([rng.random() < min(1.0, max(0.0, p + shift)) for p in ease])
        rejected += seed_lift(before, after).p_value < 0.05
    assert rejected / 300 <= 0.10
