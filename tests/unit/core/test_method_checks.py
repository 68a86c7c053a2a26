"""The DPO method checks' verdicts, on figures worked out by hand."""

from __future__ import annotations

import math

import pytest

from stage1.core.errors import EXIT_GATE
from stage1.core.method_checks import (
    LN2,
    DecodeMismatch,
    MethodCheckError,
    adapter_moved,
    enforce,
    heldout_margin,
    outcomes_to_dict,
    rows_decode,
    step0_loss,
)


def test_step0_loss_is_ln2_within_the_tolerance_on_every_pair():
    assert step0_loss([LN2, LN2 + 1e-7], tolerance=0.01).passed is True
    assert step0_loss([LN2 - 0.0099], tolerance=0.01).passed is True and step0_loss([LN2 + 0.0101], tolerance=0.01).passed is False
    reference_is_base = step0_loss([0.597, LN2], tolerance=0.01)  # measured with the raw base as reference
    assert reference_is_base.passed is False and "0.5970" in reference_is_base.message and "raw base" in reference_is_base.message
    assert reference_is_base.figures["max_deviation"] == pytest.approx(LN2 - 0.597)


def test_pairs_off_ln2_both_ways_cannot_hide_behind_their_mean():
    """-log sigmoid(+x) and -log sigmoid(-x) average above ln 2; the check reads each pair."""
    losses = [-math.log(1 / (1 + math.exp(-0.5))), -math.log(1 / (1 + math.exp(0.5)))]
    assert step0_loss(losses, tolerance=0.01).passed is False


def test_step0_loss_without_pairs_or_with_a_nan_loss():
    assert step0_loss([], tolerance=0.01).passed is None
    assert step0_loss([float("nan")], tolerance=0.01).passed is False


def test_adapter_moved():
    assert adapter_moved(0.03, 28, 28).passed is True
    unchanged = adapter_moved(0.0, 0, 28)
    assert unchanged.passed is False and "learning rate of 0" in unchanged.message
    frozen = adapter_moved(0.0, 0, 0)
    assert frozen.passed is False and "frozen" in frozen.message


def test_heldout_margin_must_exceed_the_minimum():
    grew = heldout_margin([1.0, 2.0, -0.5, 3.5], minimum=0.0)
    assert grew.passed is True
    assert grew.figures == {"pairs": 4, "mean_margin": 1.5, "median_margin": 1.5, "positive_share": 0.75, "min_heldout_margin": 0.0}
    swapped = heldout_margin([-1.0, -2.0, 0.5], minimum=0.0)
    assert swapped.passed is False and "swapped" in swapped.message
    assert heldout_margin([0.5, 0.5], minimum=0.5).passed is False  # strictly above
    unchecked = heldout_margin([-1.0], minimum=None)
    assert unchecked.passed is None and unchecked.figures["mean_margin"] == -1.0
    assert heldout_margin([], minimum=0.0).passed is None


def test_rows_decode_names_the_first_mismatch_and_suspects_a_swap():
    assert rows_decode([], rows=10).passed is True
    swapped = [DecodeMismatch("train", 3, "chosen", " Lyon.\nEND", " Paris.\nEND"),
               DecodeMismatch("train", 3, "rejected", " Paris.\nEND", " Lyon.\nEND")]
    outcome = rows_decode(swapped, rows=10)
    assert outcome.passed is False
    assert "train line 3, field 'chosen'" in outcome.message and "swapped" in outcome.message
    assert outcome.figures["first"] == {"split": "train", "line": 3, "field": "chosen"}
    prompt_only = rows_decode([DecodeMismatch("eval", None, "prompt", "a", "b")], rows=2)
    assert prompt_only.passed is False and "swapped" not in prompt_only.message


def test_enforce_fails_naming_each_failed_check_or_warns():
    outcomes = [step0_loss([0.5], 0.01), adapter_moved(0.0, 0, 4), heldout_margin([1.0], 0.0), heldout_margin([], 0.0)]
    with pytest.raises(MethodCheckError) as error:
        enforce(outcomes, "error")
    text = str(error.value)
    assert "method check step0_loss failed" in text and "method check adapter_moved failed" in text
    assert "heldout_margin" not in text and "training.method_checks: warn" in text
    assert error.value.exit_code == EXIT_GATE
    warnings = enforce(outcomes, "warn")
    assert [w.split(":")[1].strip() for w in warnings] == ["method check step0_loss failed", "method check adapter_moved failed"]
    assert enforce([heldout_margin([1.0], 0.0)], "error") == []
    with pytest.raises(ValueError):
        enforce(outcomes, "off")


def test_outcomes_to_dict_keeps_every_figure():
    record = outcomes_to_dict([adapter_moved(0.5, 2, 2)], "warn")
    assert record == {"mode": "warn", "adapter_moved": {"passed": True, "message": record["adapter_moved"]["message"],
                                                        "max_abs_change": 0.5, "changed_tensors": 2, "trainable_tensors": 2}}
