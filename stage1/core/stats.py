"""Statistics for paired binary outcomes: intervals, tests, multiple comparisons, effect sizes.

Every model is scored on the same items, so comparisons are paired: McNemar's test on the
discordant pairs, a paired bootstrap for the lift, Benjamini–Hochberg across the whole family of
comparisons, and Cohen's h as a signed effect size (a regression is negative).

Threshold inclusivity, defined once for the project: a p-value (or a BH-adjusted p-value) equal to
its threshold counts as significant (``p <= alpha``, ``p_adjusted <= q``).

Pure: only ``math`` and ``random.Random`` (no scipy); each special function below is checked in the
tests against values worked out independently.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

EXACT_MCNEMAR_BELOW = 25  # fewer discordant pairs than this: exact binomial test


def is_significant(p_value: float, threshold: float) -> bool:
    """The project's one inclusivity rule: ``p <= threshold`` is significant."""
    return p_value <= threshold


# ---------------------------------------------------------------- special functions


def normal_cdf(x: float) -> float:
    """Standard normal CDF via ``erfc`` (accurate in both tails)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _acklam_quantile(p: float) -> float:
    # Acklam's rational approximation (relative error < 1.15e-9), refined below by Halley's method.
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    low = 0.02425
    if p < low:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - low:
        return -_acklam_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def normal_quantile(p: float) -> float:
    """Inverse standard normal CDF (``normal_quantile(0.975) = 1.959964...``).

    Raises:
        ValueError: ``p`` outside the open interval (0, 1).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    x = _acklam_quantile(p)
    error = normal_cdf(x) - p
    density = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    step = error / density
    return x - step / (1 + x * step / 2)  # one Halley step: full double precision


def chi2_1_survival(statistic: float) -> float:
    """P(X >= statistic) for a chi-squared variable with one degree of freedom: erfc(sqrt(x/2))."""
    if statistic <= 0:
        return 1.0
    return math.erfc(math.sqrt(statistic / 2.0))


def binomial_cdf(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space so large n does not overflow."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1)]
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in terms))


# ---------------------------------------------------------------- intervals and tests


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    With no observations the interval is the whole range ``(0.0, 1.0)``: nothing is known.

    Raises:
        ValueError: negative counts, ``successes > n``, or ``confidence`` outside (0, 1).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return (0.0, 1.0)
    z = normal_quantile(1 - (1 - confidence) / 2)
    rate = successes / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    # In exact arithmetic the bound is 0 at 0/n and 1 at n/n; floating point leaves dust there.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class McNemarResult:
    """``statistic`` is chi-squared (continuity-corrected) or, for the exact test, the smaller count."""

    statistic: float
    p_value: float
    method: str  # "exact" or "chi2_cc"


def mcnemar(n01: int, n10: int) -> McNemarResult:
    """Two-sided McNemar test on the discordant pairs of a paired binary comparison.

    ``n01``: pairs that failed before and pass after; ``n10``: passed before, fail after.
    Fewer than 25 discordant pairs: exact binomial (p = min(1, 2·P(X <= min))). Otherwise the
    chi-squared statistic with continuity correction, (|n01 - n10| - 1)² / (n01 + n10).

    Raises:
        ValueError: a negative count.
    """
    if n01 < 0 or n10 < 0:
        raise ValueError(f"counts must be non-negative, got n01={n01}, n10={n10}")
    discordant = n01 + n10
    if discordant < EXACT_MCNEMAR_BELOW:
        smaller = min(n01, n10)
        return McNemarResult(float(smaller), min(1.0, 2.0 * binomial_cdf(smaller, discordant)), "exact")
    statistic = (abs(n01 - n10) - 1) ** 2 / discordant
    return McNemarResult(statistic, chi2_1_survival(statistic), "chi2_cc")


def benjamini_hochberg(pvalues: Sequence[float], q: float) -> tuple[list[bool], list[float]]:
    """Benjamini–Hochberg step-up procedure.

    Returns ``(rejected, adjusted)`` in the order of ``pvalues``. The adjusted p-value of the
    i-th smallest is min over j >= i of p_(j)·m/j, capped at 1; a hypothesis is rejected when its
    adjusted p-value is <= q. This rejects every hypothesis up to the largest rank k with
    p_(k) <= k·q/m, including ranks below k whose own p exceeded their threshold (step-up, not a
    per-rank test).

    ``p·m/j`` is computed exactly (``Fraction``) and rounded once: in floats, ``0.05 * 6 / 6`` is
    ``0.05000000000000001``, which would turn a p-value equal to ``q`` into a non-rejection.

    Raises:
        ValueError: a p-value outside [0, 1] or ``q`` outside (0, 1].
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    for value in pvalues:
        if not 0.0 <= value <= 1.0 or math.isnan(value):
            raise ValueError(f"p-values must be in [0, 1], got {value}")
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = Fraction(1)
    for rank in range(m, 0, -1):
        index = order[rank - 1]
        running = min(running, Fraction(pvalues[index]) * m / rank)
        adjusted[index] = float(running)
    return [is_significant(value, q) for value in adjusted], adjusted


def cohens_h(p_before: float, p_after: float) -> float:
    """Signed Cohen's h = 2·asin(√p_after) − 2·asin(√p_before); negative when the rate fell.

    Raises:
        ValueError: a proportion outside [0, 1].
    """
    for value in (p_before, p_after):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"proportions must be in [0, 1], got {value}")
    return 2 * math.asin(math.sqrt(p_after)) - 2 * math.asin(math.sqrt(p_before))


# ---------------------------------------------------------------- paired bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile interval for the paired lift (mean after − mean before)."""

    lift: float
    low: float
    high: float
    samples: int
    seed: int
    confidence: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile of already sorted values (``fraction`` in [0, 1])."""
    if not sorted_values:
        raise ValueError("no values")
    position = fraction * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    weight = position - below
    return sorted_values[below] * (1 - weight) + sorted_values[above] * weight


def paired_bootstrap(
    before: Sequence[int | bool],
    after: Sequence[int | bool],
    *,
    samples: int,
    seed: int,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Percentile bootstrap CI of the lift, resampling items (pairs stay together).

    Each resample draws ``len(before)`` item indices with replacement from ``random.Random(seed)``,
    so the same inputs and seed give the same interval on every machine.

    Raises:
        ValueError: sequences of different lengths, no pairs, ``samples < 1``.
    """
    if len(before) != len(after):
        raise ValueError(f"paired outcomes need equal lengths, got {len(before)} and {len(after)}")
    if not before:
        raise ValueError("no paired outcomes")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    n = len(before)
    differences = [int(b) - int(a) for a, b in zip(before, after)]
    rng = random.Random(seed)
    # Concordant pairs contribute 0, so a resample's lift is the sum of the drawn differences / n.
    lifts = sorted(sum(rng.choices(differences, k=n)) / n for _ in range(samples))
    alpha = 1 - confidence
    return BootstrapResult(
        lift=sum(differences) / n,
        low=percentile(lifts, alpha / 2),
        high=percentile(lifts, 1 - alpha / 2),
        samples=samples,
        seed=seed,
        confidence=confidence,
    )


# ---------------------------------------------------------------- what a comparison can detect

DEFAULT_POWER = 0.8


def mcnemar_detectable_lift(n: int, discordant: int, *, alpha: float, power: float = DEFAULT_POWER) -> float | None:
    """The smallest lift (after − before, as a rate) that McNemar's test detects with ``power``.

    For ``n`` paired items of which a share ``psi = discordant / n`` disagree, a lift ``d`` means
    ``n01 - n10`` has mean ``n·d`` and variance ``n·(psi - d²)``. The continuity-corrected test
    (``mcnemar`` above) rejects in that direction when ``n01 - n10 - 1 >= z·sqrt(n·psi)``, with
    ``z`` the two-sided ``alpha`` quantile, so its power is about
    ``Φ((n·d - 1 - z·sqrt(n·psi)) / sqrt(n·(psi - d²)))`` (Connor 1987, with the correction the
    test applies). The lift returned solves power = ``power``; it is found by bisection because
    the equation has no closed form once the correction is in. The discordance is the observed
    one: two models that rarely disagree can detect small lifts, two that often do cannot.

    Returns None when no lift up to ``psi`` (every discordant pair going one way, the largest lift
    this discordance allows) reaches ``power``, which includes ``discordant == 0``.

    Raises:
        ValueError: ``discordant`` outside [0, n], ``n < 1``, or ``alpha``/``power`` outside (0, 1).
    """
    if n < 1 or not 0 <= discordant <= n:
        raise ValueError(f"need n >= 1 and 0 <= discordant <= n, got n={n}, discordant={discordant}")
    for name, value in (("alpha", alpha), ("power", power)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    psi = discordant / n
    if psi == 0.0:
        return None
    z_alpha, z_power = normal_quantile(1 - alpha / 2), normal_quantile(power)

    def margin(lift: float) -> float:  # increasing in lift; the root is the detectable lift
        return n * lift - 1 - z_alpha * math.sqrt(n * psi) - z_power * math.sqrt(max(0.0, n * (psi - lift * lift)))

    if margin(psi) < 0:
        return None
    low, high = 0.0, psi
    for _ in range(60):  # 2^-60 of psi: far below the rounding of any report
        middle = (low + high) / 2
        low, high = (middle, high) if margin(middle) < 0 else (low, middle)
    return high


def bh_detection_alpha(q: float, tests: int, other_rejections: int) -> float:
    """The p-value a cell of a Benjamini–Hochberg family must reach to be rejected: ``(k + 1)·q/m``.

    ``m`` is the family's number of testable cells (``tests``) and ``k`` the number of *other*
    cells the family rejects. BH rejects every cell up to the largest rank ``r`` with ``p_(r) <=
    r·q/m``; a cell joining ``k`` rejected ones is rejected when its p is at most ``(k + 1)·q/m``
    (a rejected cell: at most ``k_total·q/m``, the same number). The threshold can only rise if
    the cell's rejection pulled further cells in (step-up), so a detectable lift computed at it is,
    if anything, an overstatement of what is needed. With nothing else rejected it is ``q/m``.

    Raises:
        ValueError: ``tests < 1``, ``other_rejections`` outside [0, tests − 1], or ``q`` outside (0, 1].
    """
    if tests < 1 or not 0 <= other_rejections < tests:
        raise ValueError(f"need tests >= 1 and 0 <= other_rejections < tests, got {tests}, {other_rejections}")
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    return (other_rejections + 1) * q / tests
