"""The inputs bench.commands times are valid for the commands they feed, and of the size asked."""

from __future__ import annotations

import json

import pytest

from bench import commands
from stage1.eval.score_stream import read_scored
from stage1.io.records import read_eval_items


def test_the_responses_answer_every_item_once_per_variant(tmp_path):
    path = tmp_path / "responses.jsonl"
    items = read_eval_items(commands.ITEMS)
    count = commands.write_responses(path, 3 * len(items) + 5)
    with read_scored(path, items) as scored:  # refuses a variant that skips an item or answers one twice
        columns = scored.columns
    assert count == 3 * len(items) and len(columns.variants) == 3 and all(len(v) == len(items) for v in columns.verdicts.values())


def test_the_training_rows_are_distinct_instructions(tmp_path):
    path = tmp_path / "train.jsonl"
    assert commands.write_training_rows(path, 5000) == 5000
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 5000 and len({row["instruction"] for row in rows}) == 5000


@pytest.mark.slow
def test_the_bench_runs_both_commands_and_reports_each_figure():
    rows = commands.run(sizes=(1100, 2200))  # at least one whole variant over the 1,054 items
    assert all(row.value is not None and row.value > 0 for row in rows)
    assert sum("rows/s" in row.metric for row in rows) == 8 and sum("/ 1k rows" in row.metric for row in rows) == 2
