"""Golden fixtures re-score exactly; compare_to_golden fails real regressions and tolerates noise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from stage1.core.errors import InputError
from stage1.core.eval_items import EvalResponse
from stage1.core.format import parse_completion, render_prompt
from stage1.eval.golden import (
    ITEMS_FILE,
    RESPONSES_FILE,
    GoldenTolerance,
    compare_files,
    compare_to_golden,
    large_enough,
    read_fixture_expectations,
    score_fixture,
)
from stage1.eval.summary import rate_cell
from stage1.io.readers import iter_jsonl
from stage1.io.records import read_records

GOLDEN_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "golden"


def assert_same(actual, expected, path="$"):
    """Exact equality, except floats (which may differ in the last bits across libm builds)."""
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {actual} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: length differs"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


# ---------------------------------------------------------------- scoring fixtures


def test_golden_fixture_rescoring_is_unchanged():
    """Any change to a criterion or a statistic shows here (and as a diff of the fixture files)."""
    rows, summary = score_fixture(GOLDEN_DIR)
    expected_rows, expected_summary = read_fixture_expectations(GOLDEN_DIR)
    assert json.loads(json.dumps(rows)) == expected_rows  # verdicts: exactly
    assert_same(json.loads(json.dumps(summary)), expected_summary)


def test_golden_fixture_exercises_every_verdict():
    """Each criterion passes somewhere, fails somewhere, and (where it can) is n/a somewhere."""
    rows = [row for _, row in iter_jsonl(GOLDEN_DIR / "expected_scores.jsonl")]
    for name in rows[0]["criteria"]:
        seen = {row["criteria"][name] for row in rows}
        assert {True, False} <= seen, name
    assert {None} <= {row["criteria"]["follows_constraint"] for row in rows}


def test_golden_responses_are_what_the_parser_makes_of_their_raw_text():
    for response in read_records(GOLDEN_DIR / RESPONSES_FILE, EvalResponse):
        parsed = parse_completion(response.completion_text, finished_by_eos=response.stop_reason == "eos")
        assert (response.response, response.stop_reason, response.runaway) == (parsed.response, parsed.stop_reason, parsed.runaway)
    instructions = {json.loads(line)["id"]: json.loads(line)["instruction"] for line in (GOLDEN_DIR / ITEMS_FILE).read_text().splitlines()}
    for response in read_records(GOLDEN_DIR / RESPONSES_FILE, EvalResponse):
        assert response.prompt == render_prompt(instructions[response.item_id])


# ---------------------------------------------------------------- compare_to_golden


def results_for(outcomes: dict[str, dict[str, list[bool | None]]], *, with_items: bool = True) -> dict:
    """A minimal results dict: ``{variant: {criterion: [verdict per item]}}``."""
    rates = {v: {c: rate_cell(values, 0.95) for c, values in by_c.items()} for v, by_c in outcomes.items()}
    items = []
    if with_items:
        first = next(iter(outcomes.values()))
        count = len(next(iter(first.values())))
        for index in range(count):
            items.append({
                "id": f"i{index}",
                "outcomes": {v: {"criteria": {c: values[index] for c, values in by_c.items()}} for v, by_c in outcomes.items()},
            })
    criteria = sorted({c for by_c in outcomes.values() for c in by_c})
    return {"criteria": criteria, "variants": list(outcomes), "rates": rates, "items": items}


GOLDEN_SFT = [True] * 32 + [False] * 8  # 80% on 40 items


def flipped(values: list[bool], lose: int, gain: int) -> list[bool]:
    """Turn the first ``lose`` passes into fails and the first ``gain`` fails into passes."""
    out = list(values)
    passes = [i for i, v in enumerate(values) if v][:lose]
    fails = [i for i, v in enumerate(values) if not v][:gain]
    for i in passes:
        out[i] = False
    for i in fails:
        out[i] = True
    return out


def test_identical_results_have_no_regression():
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}})
    assert compare_to_golden(golden, golden) == []


def test_cross_machine_noise_is_tolerated():
    """A few items flip both ways (greedy decoding on another GPU): not a regression."""
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}})
    noisy = results_for({"sft": {"stopped_with_end": flipped(GOLDEN_SFT, lose=3, gain=1)}})
    assert compare_to_golden(noisy, golden) == []


def test_a_real_paired_regression_fails():
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT, "on_topic": GOLDEN_SFT}})
    worse = results_for({"sft": {"stopped_with_end": flipped(GOLDEN_SFT, lose=14, gain=0), "on_topic": GOLDEN_SFT}})
    regressions = compare_to_golden(worse, golden)
    assert [(r.variant, r.criterion, r.method) for r in regressions] == [("sft", "stopped_with_end", "mcnemar")]
    assert regressions[0].golden_rate == pytest.approx(0.8) and regressions[0].current_rate == pytest.approx(0.45)
    assert "sft/stopped_with_end: 80.0% → 45.0%" in str(regressions[0])


def test_an_improvement_is_not_a_regression():
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}})
    better = results_for({"sft": {"stopped_with_end": [True] * 40}})
    assert compare_to_golden(better, golden) == []


def test_a_significant_but_tiny_drop_is_tolerated():
    """On many items a 2-point drop can be significant; below min_drop it is not a regression."""
    golden_values = [True] * 1000
    current = flipped(golden_values, lose=20, gain=0)
    golden = results_for({"sft": {"not_degenerate": golden_values}})
    assert compare_to_golden(results_for({"sft": {"not_degenerate": current}}), golden) == []
    strict = GoldenTolerance(alpha=0.01, min_drop=0.01)
    assert len(compare_to_golden(results_for({"sft": {"not_degenerate": current}}), golden, strict)) == 1


def test_without_matching_items_intervals_decide():
    golden = results_for({"sft": {"stopped_with_end": [True] * 90 + [False] * 10}}, with_items=False)
    noise = results_for({"sft": {"stopped_with_end": [True] * 85 + [False] * 15}}, with_items=False)
    real = results_for({"sft": {"stopped_with_end": [True] * 60 + [False] * 40}}, with_items=False)
    assert compare_to_golden(noise, golden) == []
    regressions = compare_to_golden(real, golden)
    assert [(r.criterion, r.method) for r in regressions] == [("stopped_with_end", "interval")]


def test_missing_evidence_fails_closed():
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}, "dpo": {"stopped_with_end": GOLDEN_SFT}})
    only_sft = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}})
    assert [(r.variant, r.method) for r in compare_to_golden(only_sft, golden)] == [("dpo", "missing")]
    no_applicable = results_for({"sft": {"stopped_with_end": [None] * 40}, "dpo": {"stopped_with_end": GOLDEN_SFT}})
    assert [(r.variant, r.method) for r in compare_to_golden(no_applicable, golden)] == [("sft", "missing")]


def test_criteria_without_golden_evidence_are_not_compared():
    ends = [True] * 10
    golden = results_for({"sft": {"follows_constraint": [None] * 10, "stopped_with_end": ends}})
    current = results_for({"sft": {"follows_constraint": [False] * 10, "stopped_with_end": ends}})
    assert compare_to_golden(current, golden) == []


@pytest.mark.parametrize("golden", [
    {"criteria": [], "variants": [], "rates": {}},
    results_for({"sft": {"follows_constraint": [None] * 10}}),
])
def test_a_golden_result_without_evidence_fails_closed(golden):
    current = results_for({"sft": {"follows_constraint": [False] * 10}})
    assert [(r.variant, r.method) for r in compare_to_golden(current, golden)] == [("(all)", "missing")]


def test_compare_files_refuses_a_golden_file_without_evidence(tmp_path):
    (tmp_path / "golden.json").write_text(json.dumps({"criteria": [], "rates": {}}))
    (tmp_path / "results.json").write_text(json.dumps(results_for({"sft": {"stopped_with_end": GOLDEN_SFT}})))
    with pytest.raises(InputError, match=r"golden.json: field 'rates': no variant and criterion with an evaluated item"):
        compare_files(tmp_path / "results.json", tmp_path / "golden.json")


@pytest.mark.parametrize("golden_passes", [150, 500, 900, 1000])
def test_a_drop_of_exactly_min_drop_counts_whatever_the_rates(golden_passes):
    """50 of 1000 items lost is a 5-point drop; float subtraction must not make it 4.999... points."""
    golden_values = [True] * golden_passes + [False] * (1000 - golden_passes)
    golden = results_for({"sft": {"not_degenerate": golden_values}})
    current = results_for({"sft": {"not_degenerate": flipped(golden_values, lose=50, gain=0)}})
    assert [r.method for r in compare_to_golden(current, golden)] == ["mcnemar"]


def test_large_enough_reads_drops_through_float_rounding():
    assert 0.15 - 0.10 < 0.05 and large_enough(0.15 - 0.10, 0.05)
    assert large_enough(0.9 - 0.85, 0.05) and large_enough(0.3, 0.05)
    assert not large_enough(0.049, 0.05) and not large_enough(0.0, 0.05)


def test_an_exact_min_drop_with_separate_intervals_is_an_unpaired_regression():
    golden = results_for({"sft": {"not_degenerate": [True] * 150 + [False] * 850}}, with_items=False)
    current = results_for({"sft": {"not_degenerate": [True] * 100 + [False] * 900}}, with_items=False)
    assert [r.method for r in compare_to_golden(current, golden)] == ["interval"]


def test_compare_files(tmp_path):
    golden = results_for({"sft": {"stopped_with_end": GOLDEN_SFT}})
    worse = results_for({"sft": {"stopped_with_end": [False] * 40}})
    (tmp_path / "golden.json").write_text(json.dumps(golden))
    (tmp_path / "results.json").write_text(json.dumps(worse))
    assert len(compare_files(tmp_path / "results.json", tmp_path / "golden.json")) == 1
    with pytest.raises(InputError, match="not found"):
        compare_files(tmp_path / "absent.json", tmp_path / "golden.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not an evaluation results file"):
        compare_files(tmp_path / "other.json", tmp_path / "golden.json")


@pytest.mark.parametrize(("alpha", "min_drop"), [(0.0, 0.05), (1.0, 0.05), (0.01, -0.1), (0.01, 1.0)])
def test_tolerance_refuses_impossible_values(alpha, min_drop):
    with pytest.raises(ValueError):
        GoldenTolerance(alpha=alpha, min_drop=min_drop)
