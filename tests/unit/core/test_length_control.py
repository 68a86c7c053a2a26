"""The length control: a paired logistic model with the log length ratio as a covariate, checked by
seeded simulation (no inflation when the criterion depends on length alone; power when the
variant matters), and against McNemar when lengths do not differ."""

from __future__ import annotations

import math
import random

import pytest

from stage1.core.length_control import length_controlled, log_length_ratio
from stage1.core.stats import is_significant, mcnemar


def _simulate(rng: random.Random, n: int, effect: float, length_effect: float, stretch: float):
    """One paired evaluation: item ease a_i ~ N(0, 1), words before ~ lognormal around 12, the after
    variant's answers ``stretch`` times longer (with noise); P(pass) = logistic(a_i + effect·after +
    length_effect·log(1 + words)). Returns (wins, losses) as log length ratios, and McNemar's p."""
    wins, losses = [], []
    for _ in range(n):
        ease = rng.gauss(0, 1) - length_effect * math.log(13)
        words_before = max(1, round(math.exp(rng.gauss(math.log(12), 0.5))))
        words_after = max(1, round(words_before * stretch * math.exp(rng.gauss(0, 0.3))))
        passes = [rng.random() < 1 / (1 + math.exp(-(ease + effect * variant + length_effect * math.log1p(words))))
                  for variant, words in ((0, words_before), (1, words_after))]
        if passes[1] and not passes[0]:
            wins.append(log_length_ratio(words_before, words_after))
        elif passes[0] and not passes[1]:
            losses.append(log_length_ratio(words_before, words_after))
    return wins, losses, mcnemar(len(wins), len(losses)).p_value


def _rejections(effect: float, length_effect: float, stretch: float, runs: int, seed: int, n: int = 250) -> tuple[float, float]:
    rng = random.Random(seed)
    controlled = raw = 0
    for _ in range(runs):
        wins, losses, raw_p = _simulate(rng, n, effect, length_effect, stretch)
        result = length_controlled(n, wins, losses)
        controlled += result is not None and is_significant(result.p_value, 0.05)
        raw += is_significant(raw_p, 0.05)
    return controlled / runs, raw / runs


def test_no_inflation_when_the_criterion_depends_on_length_alone():
    """The after variant writes twice as long and longer answers pass more often; the variant
    itself does nothing. McNemar finds the length-driven lift most of the time; the controlled test
    rejects at about its 5% level (at most 8% over 400 runs: 3 standard errors above 5%)."""
    controlled, raw = _rejections(effect=0.0, length_effect=1.5, stretch=2.0, runs=400, seed=11)
    assert raw > 0.5
    assert controlled <= 0.08


def test_no_inflation_under_the_plain_null():
    controlled, _ = _rejections(effect=0.0, length_effect=0.0, stretch=1.0, runs=400, seed=12)
    assert controlled <= 0.08


def test_a_real_effect_is_still_found_at_equal_length():
    """Answers 30% longer and a variant effect of 1 log-odds: found in at least 80% of runs. (When
    every after answer is about twice as long, length and variant can hardly be told apart and the
    controlled test says so with a wide interval: it does not claim what the data cannot show.)"""
    controlled, _ = _rejections(effect=1.0, length_effect=1.5, stretch=1.3, runs=200, seed=13)
    assert controlled >= 0.8


def test_with_equal_lengths_it_agrees_with_mcnemar_and_recovers_the_lift():
    result = length_controlled(100, [0.0] * 30, [0.0] * 10)
    assert result is not None and result.discordant == 40
    # logistic(beta) = 30.5 / 41 with the half pseudo-observation each way: lift = 0.4 * (2 * 30.5/41 - 1)
    assert result.lift == pytest.approx(0.4 * (2 * 30.5 / 41 - 1), rel=1e-6)
    assert result.log_odds == pytest.approx(math.log(30.5 / 10.5), rel=1e-6)
    assert result.p_value == pytest.approx(mcnemar(30, 10).p_value, abs=0.01)
    assert result.length_slope == pytest.approx(0.0, abs=1e-6)


def test_a_lift_that_came_with_longer_answers_shrinks_at_equal_length():
    """30 wins, each with an answer three times longer; 10 losses at equal length, 10 wins too."""
    longer = log_length_ratio(10, 32)
    result = length_controlled(200, [longer] * 30 + [0.0] * 10, [0.0] * 10 + [longer] * 2)
    assert result is not None and result.lift < (40 - 12) / 200 / 2 and result.length_slope > 0


def test_every_discordant_item_going_one_way_stays_finite_and_none_without_discordance():
    result = length_controlled(50, [0.1, -0.2, 0.3, 0.0, 0.5, 0.2, 0.1, 0.0], [])
    assert result is not None and math.isfinite(result.log_odds) and 0 < result.lift <= 8 / 50
    assert length_controlled(50, [], []) is None
    with pytest.raises(ValueError):
        length_controlled(1, [0.0, 0.0], [])


def test_the_interval_says_when_length_and_variant_cannot_be_told_apart():
    """Every win with a longer answer, every loss with a shorter one: the interval spans nearly
    the whole discordant share; with equal lengths it is narrow and excludes 0."""
    separated = length_controlled(200, [1.0] * 60, [-1.0] * 20)
    assert separated.high - separated.low > 0.7 * 80 / 200
    clear = length_controlled(200, [0.0] * 60, [0.0] * 20)
    assert 0 < clear.low < clear.lift < clear.high < 80 / 200
