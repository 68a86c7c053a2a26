"""Reward and log-prob-shift summaries, checked against values worked out by hand."""

from __future__ import annotations

import pytest

from stage1.core.reward_metrics import (
    chosen_drop_warning,
    log_prob_shift,
    summarize,
    summarize_by_group,
    summarize_by_kind,
)


def test_a_pair_is_won_only_when_the_chosen_reward_is_strictly_higher():
    summary = summarize([0.5, 0.0, -0.25, 0.75], [0.25, 0.0, 0.5, -0.25])  # a win, a tie, a loss, a win
    assert summary.to_dict() == {
        "count": 4, "reward_accuracy": 0.5, "mean_margin": 0.125,
        "mean_chosen_reward": 0.25, "mean_rejected_reward": 0.125,
    }
    assert summarize([0.0, 0.0], [0.0, 0.0]).reward_accuracy == 0.0  # step 0: every reward 0, no pair won


def test_summaries_refuse_no_pairs_and_unequal_sides():
    with pytest.raises(ValueError, match="^no pairs to summarise$"):
        summarize([], [])
    with pytest.raises(ValueError, match="^2 chosen rewards but 1 rejected ones$"):
        summarize([0.1, 0.2], [0.0])
    with pytest.raises(ValueError, match="^kinds, chosen and rejected must have the same length$"):
        summarize_by_kind(["off_topic"], [0.1, 0.2], [0.0, 0.0])
    with pytest.raises(ValueError, match="^groups, chosen and rejected must have the same length$"):
        summarize_by_group(["rules"], [0.1, 0.2], [0.0, 0.0])


def test_the_summary_by_kind_has_the_overall_summary_and_one_per_kind_in_order():
    kinds = ["verbose_vague", "off_topic", "verbose_vague"]
    chosen, rejected = [1.0, 0.5, -0.5], [0.0, 1.0, -1.0]
    summary = summarize_by_kind(kinds, chosen, rejected)
    assert list(summary) == ["overall", "by_kind"]
    assert summary["overall"] == summarize(chosen, rejected).to_dict()
    assert list(summary["by_kind"]) == ["off_topic", "verbose_vague"]
    assert summary["by_kind"]["verbose_vague"] == summarize([1.0, -0.5], [0.0, -1.0]).to_dict()


def test_log_prob_shift_is_reward_over_beta_with_the_share_that_fell():
    # rewards 0.1 * shift: shifts chosen (-2, 1, 0, -1), rejected (-4, -3, 1, -2)
    shift = log_prob_shift([-0.2, 0.1, 0.0, -0.1], [-0.4, -0.3, 0.1, -0.2], beta=0.1)
    assert shift.count == 4
    assert shift.mean_chosen == pytest.approx(-0.5)
    assert shift.mean_rejected == pytest.approx(-2.0)
    assert shift.chosen_fell_share == 0.5  # -2 and -1; an unchanged 0 did not fall
    assert shift.rejected_fell_share == 0.75


def test_a_shift_of_zero_did_not_fall():
    shift = log_prob_shift([0.0, -0.5], [0.0, 0.5], beta=0.5)
    assert (shift.chosen_fell_share, shift.rejected_fell_share) == (0.5, 0.0)
    assert shift.to_dict() == {
        "count": 2, "mean_chosen": -0.5, "mean_rejected": 0.5, "chosen_fell_share": 0.5, "rejected_fell_share": 0.0,
    }


@pytest.mark.parametrize(("args", "message"), [
    (([], [], 0.1), "^no pairs to summarise$"),
    (([0.1], [], 0.1), "^1 chosen rewards but 0 rejected ones$"),
    (([0.1], [0.2], 0.0), "^beta must be positive, got 0.0$"),
    (([0.1], [0.2], -0.1), "^beta must be positive, got -0.1$"),
])
def test_log_prob_shift_refuses_empty_unequal_or_nonpositive_beta(args, message):
    with pytest.raises(ValueError, match=message):
        log_prob_shift(*args)


def test_chosen_drop_warning_fires_only_beyond_the_limit():
    fell = log_prob_shift([-0.3, -0.1], [-0.5, -0.5], beta=0.1)  # mean chosen shift -2.0
    assert chosen_drop_warning(fell, None) is None
    at_limit = log_prob_shift([-1.0, -1.0], [0.0, 0.0], beta=0.5)  # mean chosen shift exactly -2.0
    assert chosen_drop_warning(at_limit, 2.0) is None  # exactly at the limit is not beyond it
    assert chosen_drop_warning(at_limit, 1.999) is not None
    warning = chosen_drop_warning(fell, 1.5)
    assert warning is not None and "2.000 nats" in warning and "100% of pairs" in warning and "[sigmoid, sft]" in warning
    rose = log_prob_shift([0.3], [-0.5], beta=0.1)
    assert chosen_drop_warning(rose, 0.0) is None


def test_summary_by_group_matches_by_kind_for_the_same_labels_and_splits_by_source():
    kinds = ["off_topic", "policy:no_runaway", "off_topic"]
    chosen, rejected = [0.5, 0.1, -0.2], [0.0, 0.3, -0.4]
    assert summarize_by_group(kinds, chosen, rejected) == summarize_by_kind(kinds, chosen, rejected)["by_kind"]
    by_source = summarize_by_group(["rules", "policy", "rules"], chosen, rejected)
    assert list(by_source) == ["policy", "rules"]
    assert by_source["policy"]["reward_accuracy"] == 0.0 and by_source["rules"]["reward_accuracy"] == 1.0
    assert by_source["rules"]["mean_margin"] == pytest.approx((0.5 + 0.2) / 2)
    with pytest.raises(ValueError):
        summarize_by_group(["rules"], [0.1, 0.2], [0.0, 0.0])
