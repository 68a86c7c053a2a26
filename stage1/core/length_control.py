"""A length control for paired comparisons that does not condition on the outcome.

Keeping only the items whose two responses happen to have similar lengths after generation selects
on an outcome of the variant: it drops most items a variant changed (for ``stopped_with_end`` 17 of
the 22 that changed on the default run) and can inflate a lift. Here every discordant item is
kept, and length enters as a covariate: the conditional logistic model for 1:1 matched pairs.

For item ``i`` with ``logit P(pass) = a_i + beta * after + gamma * log(1 + words)``, conditioning
on a discordant item removes the item effect ``a_i`` and leaves
``P(after passes | discordant) = logistic(beta + gamma * x_i)`` with ``x_i = log((1 + words_after)
/ (1 + words_before))``. ``beta`` is the variant's effect at equal length; ``beta = 0`` is tested
with a Wald test. With no length term this is McNemar's test; with one, a lift that came with
longer (or shorter) answers moves into ``gamma``.

Written by hand (no statsmodels in the dependencies; the core imports no frameworks): a two-
parameter Newton-Raphson fit. Half a pseudo-observation each way at ``x = 0`` (Jeffreys-style) keeps
the estimate finite when every discordant item goes one way, pulling ``beta`` toward 0 (so the
test is, if anything, conservative); a tiny ridge on ``gamma`` keeps it defined when every ``x``
is equal. ``tests/unit/core/test_length_control.py`` checks by seeded simulation that the test
holds its level when the criterion depends on length alone.

Pure: ``math`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from stage1.core.stats import normal_cdf

PSEUDO_WEIGHT = 0.5  # pseudo-observations each way at x = 0
GAMMA_RIDGE = 1e-6
MAX_ITERATIONS = 100
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class LengthControlled:
    """The paired comparison at equal response length.

    ``lift`` is the lift at equal length as a rate, ``psi · (2·logistic(beta) − 1)`` with ``psi``
    the discordant share of the ``n`` items: the expected ``(wins − losses) / n`` had the two
    responses been equally long; ``low``/``high`` map ``beta ± 1.96·se`` the same way (95%). When
    the lengths separate the outcomes (every win longer, every loss shorter) the interval spans
    nearly ``[-psi, psi]``: length and variant cannot be told apart on these items.
    ``length_slope`` is ``gamma`` (log-odds per unit of log length ratio).
    """

    n: int
    discordant: int
    log_odds: float
    se: float
    p_value: float
    lift: float
    low: float
    high: float
    length_slope: float


def log_length_ratio(words_before: int, words_after: int) -> float:
    """The covariate: ``log((1 + words_after) / (1 + words_before))``."""
    return math.log1p(words_after) - math.log1p(words_before)


def _logistic(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value)) if value >= 0 else math.exp(value) / (1.0 + math.exp(value))


def _fit(rows: Sequence[tuple[float, int, float]]) -> tuple[float, float, list[list[float]]]:
    """Weighted logistic regression of y on (1, x) by Newton-Raphson: (beta, gamma, inverse information)."""
    beta = gamma = 0.0
    inverse = [[0.0, 0.0], [0.0, 0.0]]
    for _ in range(MAX_ITERATIONS):
        g0 = g1 = h00 = h01 = 0.0
        h11 = GAMMA_RIDGE
        g1 -= GAMMA_RIDGE * gamma
        for x, y, weight in rows:
            p = _logistic(beta + gamma * x)
            g0 += weight * (y - p)
            g1 += weight * (y - p) * x
            w = weight * p * (1 - p)
            h00, h01, h11 = h00 + w, h01 + w * x, h11 + w * x * x
        determinant = h00 * h11 - h01 * h01
        inverse = [[h11 / determinant, -h01 / determinant], [-h01 / determinant, h00 / determinant]]
        step0 = inverse[0][0] * g0 + inverse[0][1] * g1
        step1 = inverse[1][0] * g0 + inverse[1][1] * g1
        beta, gamma = beta + step0, gamma + step1
        if abs(step0) < 1e-10 and abs(step1) < 1e-10:
            break
    return beta, gamma, inverse


def length_controlled(n: int, wins: Sequence[float], losses: Sequence[float]) -> LengthControlled | None:
    """The comparison of ``n`` paired items at equal length, from the log length ratios
    (``log_length_ratio``) of the discordant items that went the after way (``wins``) and the
    other way (``losses``). None when no item is discordant.

    Raises:
        ValueError: ``n`` smaller than the discordant items.
    """
    discordant = len(wins) + len(losses)
    if n < discordant:
        raise ValueError(f"n={n} is smaller than the {discordant} discordant items")
    if discordant == 0:
        return None
    rows = [(x, 1, 1.0) for x in wins] + [(x, 0, 1.0) for x in losses] + [(0.0, 1, PSEUDO_WEIGHT), (0.0, 0, PSEUDO_WEIGHT)]
    beta, gamma, inverse = _fit(rows)
    se = math.sqrt(max(inverse[0][0], 0.0))
    p_value = min(1.0, 2 * normal_cdf(-abs(beta) / se)) if se > 0 else 1.0
    psi = discordant / n
    low, high = (psi * (2 * _logistic(beta + sign * Z_95 * se) - 1) for sign in (-1, 1))
    return LengthControlled(n=n, discordant=discordant, log_odds=beta, se=se, p_value=p_value, lift=psi * (2 * _logistic(beta) - 1),
                            low=low, high=high, length_slope=gamma)
