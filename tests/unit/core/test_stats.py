"""Statistics pinned to values worked out independently, plus the properties each must keep."""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.stats import (
    benjamini_hochberg,
    binomial_cdf,
    chi2_1_survival,
    cohens_h,
    is_significant,
    mcnemar,
    normal_quantile,
    paired_bootstrap,
    percentile,
    wilson_interval,
)

# ---------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(78, 100, 0.6893, 0.8500), (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (243, 300, 0.7618, 0.8504)],
)
def test_wilson_pinned_values(successes, n, low, high):
    got_low, got_high = wilson_interval(successes, n)
    assert round(got_low, 4) == low
    assert round(got_high, 4) == high


def test_wilson_is_not_the_wald_interval():
    """The Wald interval at 0/10 is [0, 0]; Wilson's upper bound stays informative."""
    assert wilson_interval(0, 10)[1] > 0.27


def test_wilson_endpoints_are_exact_at_zero_and_all():
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0


def test_wilson_with_no_observations_is_the_whole_range():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_higher_confidence_is_wider():
    narrow, wide = wilson_interval(30, 100, 0.90), wilson_interval(30, 100, 0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


@pytest.mark.parametrize(("successes", "n", "confidence"), [(-1, 5, 0.95), (6, 5, 0.95), (1, 5, 1.0), (1, 5, 0.0)])
def test_wilson_refuses_impossible_input(successes, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


@given(st.integers(min_value=1, max_value=2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_rate_and_mirrors(pair):
    """low <= s/n <= high inside [0, 1]; the interval of the failures is the mirror image."""
    successes, n = pair
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= successes / n <= high <= 1.0
    mirror_low, mirror_high = wilson_interval(n - successes, n)
    assert math.isclose(low, 1 - mirror_high, abs_tol=1e-12)
    assert math.isclose(high, 1 - mirror_low, abs_tol=1e-12)


# ---------------------------------------------------------------- special functions


@pytest.mark.parametrize("p", [1e-12, 1e-6, 0.001, 0.0242, 0.0243, 0.1, 0.5, 0.8, 0.975, 0.9757, 0.999, 1 - 1e-9])
def test_normal_quantile_matches_the_standard_library(p):
    assert math.isclose(normal_quantile(p), NormalDist().inv_cdf(p), rel_tol=1e-9, abs_tol=1e-9)


def test_normal_quantile_pinned():
    assert round(normal_quantile(0.975), 6) == 1.959964


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_normal_quantile_refuses_outside_open_interval(p):
    with pytest.raises(ValueError):
        normal_quantile(p)


@pytest.mark.parametrize(("statistic", "expected"), [(3.841458820694124, 0.05), (6.6348966010212145, 0.01), (0.0, 1.0)])
def test_chi2_survival_at_textbook_critical_values(statistic, expected):
    assert math.isclose(chi2_1_survival(statistic), expected, rel_tol=1e-9)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (2, 10), (5, 10), (9, 10), (3, 24), (12, 24), (40, 100)])
def test_binomial_cdf_matches_exact_fractions(k, n):
    exact = sum(Fraction(math.comb(n, i), 2**n) for i in range(k + 1))
    assert math.isclose(binomial_cdf(k, n), float(exact), rel_tol=1e-12)


def test_binomial_cdf_edges():
    assert binomial_cdf(-1, 5) == 0.0
    assert binomial_cdf(5, 5) == 1.0


# ---------------------------------------------------------------- McNemar


def test_mcnemar_chi_squared_with_continuity_correction():
    result = mcnemar(57, 2)
    assert result.method == "chi2_cc"
    assert round(result.statistic, 4) == 49.4237
    assert f"{result.p_value:.2e}" == "2.06e-12"


def test_mcnemar_exact_below_25_discordant_pairs():
    result = mcnemar(8, 2)
    assert result.method == "exact"
    assert result.p_value == pytest.approx(0.109375, abs=1e-15)


def test_mcnemar_no_discordant_pairs():
    assert mcnemar(0, 0).p_value == 1.0


def test_mcnemar_switches_method_at_25():
    assert mcnemar(20, 4).method == "exact"
    assert mcnemar(20, 5).method == "chi2_cc"


@given(st.integers(0, 200), st.integers(0, 200))
def test_mcnemar_is_symmetric_and_a_probability(n01, n10):
    forward, backward = mcnemar(n01, n10), mcnemar(n10, n01)
    assert forward.p_value == backward.p_value
    assert 0.0 <= forward.p_value <= 1.0


def test_mcnemar_refuses_negative_counts():
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


# ---------------------------------------------------------------- Benjamini–Hochberg


def test_bh_rejects_exactly_the_first_three():
    rejected, adjusted = benjamini_hochberg([0.001, 0.004, 0.03, 0.08, 0.15, 0.20], 0.10)
    assert rejected == [True, True, True, False, False, False]
    assert adjusted == pytest.approx([0.006, 0.012, 0.06, 0.12, 0.18, 0.20])


def test_bh_is_step_up_not_per_rank():
    """0.03 > 0.05·1/2, but the larger 0.04 <= 0.05·2/2 carries it: both rejected."""
    rejected, adjusted = benjamini_hochberg([0.03, 0.04], 0.05)
    assert rejected == [True, True]
    assert adjusted == pytest.approx([0.04, 0.04])


def test_bh_threshold_is_inclusive():
    rejected, adjusted = benjamini_hochberg([0.05], 0.05)
    assert adjusted == [0.05] and rejected == [True]
    assert is_significant(0.05, 0.05) and not is_significant(0.0500001, 0.05)


@pytest.mark.parametrize("m", [2, 3, 6, 7, 10])
@pytest.mark.parametrize("q", [0.05, 0.1, 0.2])
def test_bh_p_values_equal_to_q_are_rejected_whatever_the_family_size(m, q):
    """Floating point must not break inclusivity: 0.05 * 6 / 6 is 0.05000000000000001 in floats."""
    rejected, adjusted = benjamini_hochberg([q] * m, q)
    assert rejected == [True] * m and adjusted == [q] * m


def test_bh_empty_family():
    assert benjamini_hochberg([], 0.05) == ([], [])


@pytest.mark.parametrize(("pvalues", "q"), [([0.5, 1.2], 0.05), ([float("nan")], 0.05), ([0.1], 0.0)])
def test_bh_refuses_bad_input(pvalues, q):
    with pytest.raises(ValueError):
        benjamini_hochberg(pvalues, q)


pvalue_lists = st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=1, max_size=30)


@given(pvalue_lists, st.floats(min_value=0.001, max_value=1.0), st.randoms(use_true_random=False))
def test_bh_adjusted_values_do_not_depend_on_input_order(pvalues, q, rng):
    """Shuffling the input shuffles the output the same way, and nothing else changes."""
    order = list(range(len(pvalues)))
    rng.shuffle(order)
    rejected, adjusted = benjamini_hochberg(pvalues, q)
    shuffled_rejected, shuffled_adjusted = benjamini_hochberg([pvalues[i] for i in order], q)
    assert shuffled_adjusted == [adjusted[i] for i in order]
    assert shuffled_rejected == [rejected[i] for i in order]


@given(pvalue_lists, st.floats(min_value=0.001, max_value=1.0))
def test_bh_adjusted_values_are_monotone_and_match_the_step_up_rule(pvalues, q):
    """Adjusted values follow the p-values' order, never fall below them, and reject exactly the
    hypotheses with p <= the largest p_(k) satisfying p_(k) <= k·q/m."""
    rejected, adjusted = benjamini_hochberg(pvalues, q)
    ranked = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    for earlier, later in zip(ranked, ranked[1:]):
        assert adjusted[earlier] <= adjusted[later]
    assert all(p <= a + 1e-12 and a <= 1.0 for p, a in zip(pvalues, adjusted))
    m = len(pvalues)
    passing = [pvalues[i] for k, i in enumerate(ranked, start=1) if Fraction(pvalues[i]) * m <= k * Fraction(q)]
    cutoff = max(passing) if passing else -1.0
    assert rejected == [p <= cutoff for p in pvalues]


# ---------------------------------------------------------------- Cohen's h


def test_cohens_h_pinned_and_signed():
    assert round(cohens_h(0.81, 298 / 300), 4) == 0.7386
    assert round(cohens_h(298 / 300, 0.81), 4) == -0.7386


@given(st.floats(0, 1), st.floats(0, 1))
def test_cohens_h_is_antisymmetric_and_signed_by_direction(before, after):
    h = cohens_h(before, after)
    assert h == pytest.approx(-cohens_h(after, before))
    if after < before:
        assert h <= 0
    if after > before:
        assert h >= 0


def test_cohens_h_refuses_non_proportions():
    with pytest.raises(ValueError):
        cohens_h(0.5, 1.2)


# ---------------------------------------------------------------- paired bootstrap


def test_bootstrap_is_reproducible_and_seeded():
    before = [0] * 60 + [1] * 40
    after = [1] * 70 + [0] * 30
    first = paired_bootstrap(before, after, samples=500, seed=3)
    assert first == paired_bootstrap(before, after, samples=500, seed=3)
    assert first != paired_bootstrap(before, after, samples=500, seed=4)
    assert first.lift == pytest.approx(0.3)
    assert first.low < first.lift < first.high


def test_bootstrap_interval_is_roughly_the_normal_one():
    """On a large paired sample the percentile interval agrees with the normal approximation."""
    before = [0] * 600 + [1] * 400
    after = [1] * 500 + [0] * 100 + [1] * 300 + [0] * 100
    result = paired_bootstrap(before, after, samples=2000, seed=0)
    diffs = [b - a for a, b in zip(before, after)]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
    assert result.low == pytest.approx(mean - 1.96 * sd, abs=0.01)
    assert result.high == pytest.approx(mean + 1.96 * sd, abs=0.01)


def test_bootstrap_without_discordant_pairs_has_zero_width():
    result = paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1], samples=100, seed=0)
    assert (result.lift, result.low, result.high) == (0.0, 0.0, 0.0)


def test_bootstrap_regression_is_negative():
    result = paired_bootstrap([1] * 50, [1] * 20 + [0] * 30, samples=300, seed=1)
    assert result.lift == pytest.approx(-0.6) and result.high < 0


@pytest.mark.parametrize(("before", "after", "samples"), [([1], [1, 0], 10), ([], [], 10), ([1], [0], 0)])
def test_bootstrap_refuses_bad_input(before, after, samples):
    with pytest.raises(ValueError):
        paired_bootstrap(before, after, samples=samples, seed=0)


def test_percentile_interpolates():
    assert percentile([0.0, 1.0, 2.0, 3.0], 0.5) == 1.5
    assert percentile([5.0], 0.9) == 5.0
