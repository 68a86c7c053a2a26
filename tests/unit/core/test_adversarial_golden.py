"""The adversarial scoring fixture: hedges, retractions, negations, lists and refusals score as pinned."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from stage1.core.criteria import is_refusal, score_response
from stage1.core.eval_items import EvalItem

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
GOLDEN = FIXTURES / "golden" / "adversarial.jsonl"


def _script():
    spec = importlib.util.spec_from_file_location("make_adversarial", FIXTURES / "make_adversarial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROWS = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_each_adversarial_response_scores_exactly_as_pinned(row):
    """Re-scoring gives every criterion's pinned verdict, and the hand-written ones among them."""
    script = _script()
    item = EvalItem.from_dict(row["item"])
    verdicts = score_response(item, script._response(item, row["response"]))
    verdicts["refusal"] = is_refusal(row["response"])
    assert verdicts == row["verdicts"]
    assert {name: verdicts[name] for name in row["expect"]} == row["expect"]


def test_the_fixture_covers_every_group_and_the_probed_loopholes():
    groups = {row["group"] for row in ROWS}
    assert {"hedge", "retraction", "negation", "commitment", "yes_no", "list", "refusal", "lookalike", "declined",
            "number_words", "yes_no_statement", "list_prose", "hedge_possibility", "contentless", "inflection", "script"} <= groups
    by_response = {(row["item"]["id"], row["response"]): row["verdicts"] for row in ROWS}
    assert by_response[("capital", "It is not Rome; it is Milan.")]["factually_correct"] is False
    assert by_response[("capital", "Milan, Turin, Rome or Naples.")]["factually_correct"] is False
    assert by_response[("times", "67. Not 33.")]["factually_correct"] is False
    assert by_response[("eggs", "Cats do not lay eggs.")]["factually_correct"] is True
    assert by_response[("sum", "Sixty plus forty equals one hundred.")]["factually_correct"] is True
    assert by_response[("bats", "The answer is yes.")]["factually_correct"] is True
    assert by_response[("bats", "Bats are mammals.")]["factually_correct"] is True
    assert by_response[("bats", "Bats are mammals.")]["follows_constraint"] is False, "the form is follows_constraint's business"
    assert by_response[("planets", "Mars and Jupiter are two planets.")]["follows_constraint"] is True
    assert by_response[("capital", "Possibly Rome, possibly Milan.")]["factually_correct"] is False
    for text in (".", "- - -", "====="):
        verdicts = next(row["verdicts"] for row in ROWS if row["response"] == text)
        assert verdicts["not_degenerate"] is False and verdicts["follows_constraint"] is False, text
    assert all(row["verdicts"]["on_topic"] is None for row in ROWS if row["item"].get("refusal_expected"))


def test_each_new_class_pins_cases_that_count_and_cases_that_must_not():
    """The executable specification holds both sides of every rule it states."""
    for group in ("number_words", "yes_no_statement", "list_prose", "hedge_possibility", "contentless", "inflection", "script"):
        pinned = [value for row in ROWS if row["group"] == group for value in row["expect"].values() if value is not None]
        assert True in pinned and False in pinned, group
        assert sum(row["group"] == group for row in ROWS) >= 6, group


def test_the_script_writes_the_committed_file_byte_identically(tmp_path):
    assert _script().main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "adversarial.jsonl").read_bytes() == GOLDEN.read_bytes()


def test_the_script_refuses_to_write_when_a_hand_written_verdict_is_wrong(monkeypatch):
    script = _script()
    case = ("wrong", "hedge", "capital", "Rome or Milan.", {"factually_correct": True})
    monkeypatch.setattr(script, "CASES", (case,))
    with pytest.raises(AssertionError, match="wrong: factually_correct is False, expected True"):
        script.build_rows()


def test_score_with_counts_how_another_criteria_module_does(tmp_path):
    """A criteria module that finds the reference anywhere and knows no refusal misses every hedge."""
    naive = tmp_path / "naive_criteria.py"
    naive.write_text(
        "from stage1.core import criteria as real\n"
        "CRITERIA = dict(real.CRITERIA)\n"
        "CRITERIA['factually_correct'] = lambda item, r: any(real.contains_phrase(r.response, a) for a in item.accepted_answers)\n"
        "is_applicable = real.is_applicable\n"
        "def is_refusal(text):\n    return False\n",
        encoding="utf-8",
    )
    counts = _script().agreement(naive)
    assert counts["hedge"] == {"wrong": 9}
    assert counts["commitment"]["ok"] == 9
    assert counts["refusal"]["ok"] == 10  # no_unwarranted_refusal still real; is_refusal never true
    assert sum(counts["declined"].values()) == 9
