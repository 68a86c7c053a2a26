"""The share of the SFT gain a handed-on model keeps, and the gate on it (pure)."""

from __future__ import annotations

import pytest

from stage1.core.errors import ConfigError, GateError
from stage1.train.handoff import LoadFidelity, check_fidelity, gain_kept
from stage1.train.settings import TrainingSettings


def test_gain_kept_by_hand():
    # The figures of a dequantized_nf4 merge reloaded in nf4 (tiny model, lr 5e-5): 1.8% kept.
    assert gain_kept(11.9697, 11.9305, 11.9690) == pytest.approx((11.9697 - 11.9690) / (11.9697 - 11.9305))
    assert gain_kept(2.0, 1.0, 1.0) == 1.0 and gain_kept(2.0, 1.0, 2.0) == 0.0 and gain_kept(2.0, 1.0, 2.5) == -0.5
    assert gain_kept(2.0, 2.0, 1.5) is None and gain_kept(2.0, 2.1, 1.5) is None, "no gain, no share of it"


def _load(kept):
    return LoadFidelity("dpo", "merged, nf4", 1.5, kept, 0.1)


def test_the_gate_is_inclusive_at_its_floor_and_names_the_fix():
    check_fidelity([_load(0.9)], 0.9, base_loss=2.0, trained_loss=1.0, fix="do X")
    with pytest.raises(GateError, match="keeps 89.9% of the SFT gain") as raised:
        check_fidelity([_load(0.9), _load(0.899)], 0.9, base_loss=2.0, trained_loss=1.0, fix="set training.sft_handoff: adapter")
    assert str(raised.value).endswith("set training.sft_handoff: adapter")


def test_the_gate_fails_closed_without_a_gain_unless_switched_off():
    with pytest.raises(GateError, match="cannot be measured"):
        check_fidelity([_load(None)], 0.9, base_loss=2.0, trained_loss=2.0, fix="")
    check_fidelity([_load(None)], 0.0, base_loss=2.0, trained_loss=2.0, fix="")


def test_the_floor_and_the_handoff_are_checked_settings():
    assert TrainingSettings().min_sft_gain_kept == 0.9 and TrainingSettings().sft_handoff == "merge"
    with pytest.raises(ConfigError) as raised:
        TrainingSettings(min_sft_gain_kept=1.5)
    assert raised.value.field == "training.min_sft_gain_kept"
    with pytest.raises(ConfigError):
        TrainingSettings.from_dict({"sft_handoff": "merged"})
