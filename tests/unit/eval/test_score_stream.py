"""`stage1 score` streams: verdict columns and a spool on disk, and results.json written item by item,
with the same bytes as the whole results written at once (``report.results_json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stage1 import cli
from stage1.core.criteria import CRITERION_NAMES
from stage1.core.eval_items import stratified_sample
from stage1.eval.columns import NOT_APPLICABLE, PASS, from_verdicts
from stage1.eval.report import results_json, results_json_chunks
from stage1.eval.score import comparison_plan
from stage1.eval.score_stream import read_scored, response_from_row
from stage1.eval.settings import EvalSettings
from stage1.eval.summary import summarise
from stage1.io.atomic import dumps_json
from stage1.io.records import read_eval_items

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "fixtures" / "golden"


def _rows(variants: int = 3) -> list[dict]:
    """The fixture's generations as another framework writes them, under ``variants`` names (a sweep)."""
    rows = [json.loads(line) for line in (GOLDEN / "responses.jsonl").read_text().splitlines()]
    out = []
    for copy in range(variants):
        for row in rows:
            if row["variant"] == ("base" if copy % 2 == 0 else "sft"):
                out.append({"item_id": row["item_id"], "variant": f"v{copy}", "response": row["completion_text"],
                            "stop_reason": row["stop_reason"], "num_tokens": row["num_tokens"]})
    return out


def _in_memory(rows: list[dict], settings: EvalSettings, written: dict) -> dict:
    """The results as the in-memory path (``summarise``, every response held) makes them."""
    all_items = read_eval_items(GOLDEN / "items.jsonl")
    known = {item.id for item in all_items}
    items = stratified_sample(all_items, settings.limit, settings.seed)
    responses: dict = {}
    for row in rows:
        response = response_from_row(row, known)
        responses.setdefault(response.variant, {})[response.item_id] = response
    kept = {item.id for item in items}
    responses = {v: {i: r for i, r in by_item.items() if i in kept} for v, by_item in responses.items()}
    pairs, families = comparison_plan(settings, list(responses))
    results = summarise(items, responses, pairs=pairs, confidence=settings.confidence, q=settings.q, bootstrap_samples=settings.bootstrap_samples,
                        seed=settings.seed, min_category_items=settings.min_category_items, families=families)
    return {**results, "skipped_variants": {}, "settings": written["settings"], "provenance": written["provenance"]}


@pytest.mark.parametrize("limit", [None, 9])
def test_score_writes_the_bytes_of_the_whole_results(tmp_path, limit):
    rows = _rows()
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "scored"
    extra = [] if limit is None else ["--set", f"eval.limit={limit}"]
    assert cli.main(["score", "--in", f"items={GOLDEN / 'items.jsonl'}", "--in", f"responses={responses}", "--out", str(out),
                     "--set", "eval.bootstrap_samples=50", *extra]) == 0
    text = (out / "results.json").read_text(encoding="utf-8")
    written = json.loads(text)
    settings = EvalSettings(bootstrap_samples=50, limit=limit)
    expected = _in_memory(rows, settings, written)
    assert written["num_items"] == (limit or len(read_eval_items(GOLDEN / "items.jsonl")))
    assert results_json(expected) == text


def test_the_columns_hold_each_verdict_word_count_and_token_count(tmp_path):
    rows = _rows(variants=2)
    rows[0]["num_tokens"] = None
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(row) + "\n" for row in rows))
    items = read_eval_items(GOLDEN / "items.jsonl")
    with read_scored(responses, items) as scored:
        columns = scored.columns
        assert columns.variants == ["v0", "v1"] and columns.item_ids == [item.id for item in items]
        first = json.loads(scored.outcome_text("v0", columns.item_ids.index(rows[0]["item_id"])))
    assert first["num_tokens"] is None and first["completion_text"] == rows[0]["response"]
    k = columns.item_ids.index(rows[0]["item_id"])
    expected = [NOT_APPLICABLE if first["criteria"][name] is None else int(first["criteria"][name]) for name in CRITERION_NAMES]
    assert columns.verdicts["v0"][k].tolist() == expected and columns.tokens["v0"][k] == -1
    assert columns.words["v0"][k] == len(first["response"].split())


def test_the_spool_is_closed_when_a_row_is_refused(tmp_path):
    rows = _rows(variants=1)
    rows.append(dict(rows[0]))  # the same (variant, item) twice
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(Exception, match="twice"):
        read_scored(responses, read_eval_items(GOLDEN / "items.jsonl"))


def test_columns_from_verdicts_mark_a_missing_item_not_applicable():
    columns = from_verdicts({"a": {"i1": dict.fromkeys(CRITERION_NAMES, True)}, "b": {}}, ["i1"])
    assert (columns.verdicts["a"] == PASS).all() and (columns.verdicts["b"] == NOT_APPLICABLE).all()
    assert columns.take([0]).verdicts["a"].shape == (1, len(CRITERION_NAMES)) and columns.words is None


@pytest.mark.parametrize("lines", [[], ['{"id": "x"}'], ['{"id": "x"}', '{"id": "y"}']])
def test_results_json_pieces_make_the_indented_head_around_one_line_per_item(lines):
    head = {"schema": "s", "rates": {"a": [1, 2]}, "zeta": None}
    text = "".join(results_json_chunks(head, iter(lines)))
    assert json.loads(text) == {**head, "items": [json.loads(line) for line in lines]}
    assert text.replace("\n", "").replace(" ", "") == dumps_json({**head, "items": [json.loads(line) for line in lines]}).replace(
        "\n", "").replace(" ", "")
    assert [line for line in text.splitlines() if line.startswith("    {")] == [f"    {line}," for line in lines[:-1]] + [f"    {line}" for line in lines[-1:]]
