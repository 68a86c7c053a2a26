"""The generalisation slice: items marked ``slice`` get their own rates and paired comparisons."""

from __future__ import annotations

import json
from pathlib import Path

from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.eval.report_markdown import render_markdown
from stage1.eval.slices import REST, slice_cells
from stage1.eval.summary import summarise

ROOT = Path(__file__).parents[3]


def _items() -> list[EvalItem]:
    old = [EvalItem(f"o{i}", f"What is {i} plus 1?", "arithmetic", str(i + 1)) for i in range(20)]
    new = [EvalItem(f"n{i}", f"Add {i} and 1.", "arithmetic", str(i + 1), slice="new_wording") for i in range(20)]
    return old + new


def _responses(items, right):
    out = {}
    for item in items:
        text = f"{item.reference if right(item) else 'blue'}."
        out[item.id] = EvalResponse(item.id, "v", "", f" {text}\nEND", text, "end", False, 3)
    return out


def test_a_model_that_memorised_the_templates_shows_a_gap_on_the_new_wordings():
    items = _items()
    responses = {"base": _responses(items, lambda item: False), "sft": _responses(items, lambda item: item.slice is None)}
    results = summarise(items, responses, pairs=[("base", "sft")], confidence=0.95, q=0.05, bootstrap_samples=50, seed=0,
                        min_category_items=3)
    slices = results["slices"]
    assert list(slices) == ["new_wording", REST] and slices["new_wording"]["size"] == 20
    assert slices[REST]["rates"]["sft"]["factually_correct"]["rate"] == 1.0
    assert slices["new_wording"]["rates"]["sft"]["factually_correct"]["rate"] == 0.0
    lift = {c["criterion"]: c for c in slices[REST]["comparisons"]}["factually_correct"]
    assert lift["wins"] == 20 and lift["significant"]
    assert not {c["criterion"]: c for c in slices["new_wording"]["comparisons"]}["factually_correct"]["wins"]
    assert "### new_wording (20 items)" in render_markdown(results | {"provenance": {}})


def test_no_slice_section_without_sliced_items():
    items = [item for item in _items() if item.slice is None]
    assert slice_cells(items) == {}
    responses = {"base": _responses(items, lambda item: True)}
    results = summarise(items, responses, pairs=[], confidence=0.95, q=0.05, bootstrap_samples=10, seed=0, min_category_items=3)
    assert "slices" not in results


def test_the_shipped_pool_has_a_new_wording_slice_in_every_family_it_restates():
    rows = [json.loads(line) for line in (ROOT / "stage1/pools/eval/items.jsonl").read_text(encoding="utf-8").splitlines()]
    sliced = [EvalItem.from_dict(row) for row in rows if row.get("slice")]
    assert {item.slice for item in sliced} == {"new_wording"} and len(sliced) == 30
    assert {item.category for item in sliced} == {"factual_qa", "arithmetic", "conversions", "antonyms", "sentence_completion"}
    references = {(row["category"], row["reference"]) for row in rows if not row.get("slice")}
    assert all((item.category, item.reference) in references for item in sliced), "a new wording restates a fact the pool asks"
    assert EvalItem.from_dict(sliced[0].to_dict()) == sliced[0]
