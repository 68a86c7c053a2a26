"""The golden check reports significant changes in either direction and fails only a large drop.

An improvement that disappears must be visible (a swapped preference pair made DPO look better on
a random-weight model, and a correct run's gain can vanish without any variant dropping 5 points).
"""

from __future__ import annotations

import json

import pytest
from test_golden import GOLDEN_SFT, flipped, results_for

from stage1.eval.golden import GoldenTolerance, compare_to_golden
from stage1.eval.golden_changes import Change, changes_against_golden, check_files


def with_comparison(results: dict, before: str, after: str) -> dict:
    return {**results, "comparisons": [{"before": before, "after": after, "criterion": c} for c in results["criteria"]]}


def test_identical_results_report_no_change():
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}})
    assert changes_against_golden(golden, golden) == []


def test_a_significant_gain_is_reported_and_does_not_fail():
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}, "dpo": {"stopped_with_end": [False] * 40}})
    better = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}, "dpo": {"stopped_with_end": [True] * 40}})
    assert compare_to_golden(better, golden) == []
    (change,) = changes_against_golden(better, golden)
    assert (change.subject, change.criterion, change.kind) == ("dpo", "stopped_with_end", "gain")
    assert change.golden == 0.0 and change.current == 1.0 and change.p_value < 0.01
    assert "dpo/stopped_with_end: gain, 0.0% → 100.0%" in str(change)


def test_noise_is_not_a_change():
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}})
    noisy = results_for({"sft": {"stopped_with_end": flipped(GOLDEN_SFT, lose=3, gain=1)}})
    assert changes_against_golden(noisy, golden) == []


def test_a_significant_drop_below_min_drop_is_reported_not_failed_and_a_large_one_fails_only():
    golden_values = [True] * 1000
    golden = results_for({"sft": {"not_degenerate": golden_values}})
    small = results_for({"sft": {"not_degenerate": flipped(golden_values, lose=20, gain=0)}})
    assert compare_to_golden(small, golden) == []
    assert [(c.kind, c.subject) for c in changes_against_golden(small, golden)] == [("small_drop", "sft")]
    large = results_for({"sft": {"not_degenerate": flipped(golden_values, lose=80, gain=0)}})
    assert len(compare_to_golden(large, golden)) == 1
    assert changes_against_golden(large, golden) == []  # reported once, as the regression


def test_the_drop_rule_is_configurable():
    """A stricter min_drop turns the reported small drop into a failing regression."""
    golden_values = [True] * 1000
    golden = results_for({"sft": {"not_degenerate": golden_values}})
    small = results_for({"sft": {"not_degenerate": flipped(golden_values, lose=20, gain=0)}})
    strict = GoldenTolerance(alpha=0.01, min_drop=0.01)
    assert len(compare_to_golden(small, golden, strict)) == 1 and changes_against_golden(small, golden, strict) == []
    lenient = GoldenTolerance(alpha=1e-9, min_drop=0.05)
    assert changes_against_golden(small, golden, lenient) == []


def test_an_improvement_that_disappears_is_visible_though_no_variant_fails():
    """Golden: SFT -> DPO gains 12 items of 40 on stopped_with_end. Now DPO equals SFT: DPO lost
    12 items against its golden self, 30 points, which fails; with min_drop above that, nothing
    fails, and the lost effect is still reported."""
    sft = [False] * 20 + [True] * 20
    dpo_then = [True] * 12 + [False] * 8 + [True] * 20
    golden = with_comparison(results_for({"sft": {"stopped_with_end": sft}, "dpo": {"stopped_with_end": dpo_then}}), "sft", "dpo")
    now = with_comparison(results_for({"sft": {"stopped_with_end": sft}, "dpo": {"stopped_with_end": sft}}), "sft", "dpo")
    tolerance = GoldenTolerance(alpha=0.01, min_drop=0.5)
    assert compare_to_golden(now, golden, tolerance) == []
    changes = changes_against_golden(now, golden, tolerance)
    lost = [c for c in changes if c.subject == "sft->dpo"]
    assert [(c.criterion, c.kind) for c in lost] == [("stopped_with_end", "effect_gone")]
    assert lost[0].golden == pytest.approx(0.3) and lost[0].current == 0.0
    assert [(c.subject, c.kind) for c in changes if c.subject == "dpo"] == [("dpo", "small_drop")]


def test_an_effect_that_reverses_or_appears_is_reported():
    sft = [False] * 20 + [True] * 20
    better = [True] * 12 + [False] * 8 + [True] * 20
    worse = [False] * 20 + [False] * 12 + [True] * 8
    golden = results_for({"sft": {"on_topic": sft}, "dpo": {"on_topic": better}})
    reversed_now = with_comparison(results_for({"sft": {"on_topic": sft}, "dpo": {"on_topic": worse}}), "sft", "dpo")
    kinds = {c.kind for c in changes_against_golden(reversed_now, golden, GoldenTolerance(min_drop=0.99)) if "->" in c.subject}
    assert kinds == {"effect_reversed"}
    flat = results_for({"sft": {"on_topic": sft}, "dpo": {"on_topic": sft}})
    appeared = with_comparison(results_for({"sft": {"on_topic": sft}, "dpo": {"on_topic": better}}), "sft", "dpo")
    assert [c.kind for c in changes_against_golden(appeared, flat) if "->" in c.subject] == ["effect_new"]


def test_without_matching_items_separate_intervals_report_a_gain():
    golden = results_for({"sft": {"stopped_with_end": [True] * 40 + [False] * 60}}, with_items=False)
    current = results_for({"sft": {"stopped_with_end": [True] * 80 + [False] * 20}}, with_items=False)
    (change,) = changes_against_golden(current, golden)
    assert change.kind == "gain" and change.p_value is None and "intervals apart" in change.detail


def test_check_files_returns_regressions_and_changes(tmp_path):
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}, "dpo": {"stopped_with_end": [False] * 40}})
    current = results_for({"sft": {"stopped_with_end": [False] * 40}, "dpo": {"stopped_with_end": [True] * 40}})
    (tmp_path / "golden.json").write_text(json.dumps(golden))
    (tmp_path / "results.json").write_text(json.dumps(current))
    regressions, changes = check_files(tmp_path / "results.json", tmp_path / "golden.json")
    assert [(r.variant, r.method) for r in regressions] == [("sft", "mcnemar")]
    assert [(c.subject, c.kind) for c in changes] == [("dpo", "gain")] and isinstance(changes[0], Change)
    assert changes[0].to_dict()["kind"] == "gain"
