"""The example rows README's "Your own data" shows are read as it says: a newcomer copies them."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from stage1.core.records import InstructionRecord, SFTExample
from stage1.io.records import read_eval_items, read_records

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(language: str) -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Your own data", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_the_instruction_examples_read_the_same_from_jsonl_and_csv(tmp_path):
    (jsonl_rows, _), (csv_rows,) = _blocks("jsonl"), _blocks("csv")
    (tmp_path / "rows.jsonl").write_text(jsonl_rows, encoding="utf-8")
    (tmp_path / "rows.csv").write_text(csv_rows, encoding="utf-8")
    from_jsonl, from_csv = read_records(tmp_path / "rows.jsonl", SFTExample), read_records(tmp_path / "rows.csv", SFTExample)
    assert list(from_jsonl) == list(from_csv) and [row.refusal_expected for row in from_csv] == [False, True]
    # Without the response column (sft_data.source: model) the same rows read as instructions.
    with (tmp_path / "rows.csv").open(newline="") as source, (tmp_path / "plain.csv").open("w", newline="") as target:
        rows = [{key: value for key, value in row.items() if key != "response"} for row in csv.DictReader(source)]
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert [(row.id, row.refusal_expected) for row in read_records(tmp_path / "plain.csv", InstructionRecord)] == [("q1", False), ("q2", True)]


def test_the_evaluation_item_examples_are_valid_items(tmp_path):
    (_, items) = _blocks("jsonl")
    (tmp_path / "items.jsonl").write_text(items, encoding="utf-8")
    read = read_eval_items(tmp_path / "items.jsonl")
    assert [item.reference for item in read] == ["Rome", None] and read[1].constraint.n == 3
