"""Reward and log-prob-shift summaries, checked against values worked out by hand."""

from __future__ import annotations

import pytest

from stage1.core.reward_metrics import chosen_drop_warning, log_prob_shift, summarize_by_group, summarize_by_kind


def test_log_prob_shift_is_reward_over_beta_with_the_share_that_fell():
    # rewards 0.1 * shift: shifts chosen (-2, 1, 0, -1), rejected (-4, -3, 1, -2)
    shift = log_prob_shift([-0.2, 0.1, 0.0, -0.1], [-0.4, -0.3, 0.1, -0.2], beta=0.1)
    assert shift.count == 4
    assert shift.mean_chosen == pytest.approx(-0.5)
    assert shift.mean_rejected == pytest.approx(-2.0)
    assert shift.chosen_fell_share == 0.5  # -2 and -1; an unchanged 0 did not fall
    assert shift.rejected_fell_share == 0.75


@pytest.mark.parametrize("args", [([], [], 0.1), ([0.1], [], 0.1), ([0.1], [0.2], 0.0)])
def test_log_prob_shift_refuses_empty_unequal_or_nonpositive_beta(args):
    with pytest.raises(ValueError):
        log_prob_shift(*args)


def test_chosen_drop_warning_fires_only_beyond_the_limit():
    fell = log_prob_shift([-0.3, -0.1], [-0.5, -0.5], beta=0.1)  # mean chosen shift -2.0
    assert chosen_drop_warning(fell, None) is None
    assert chosen_drop_warning(fell, 2.0) is None  # exactly at the limit is not beyond it
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
