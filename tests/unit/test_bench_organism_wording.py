"""bench.organism_wording asks the same held-out facts in the SFT pool's own wording: every reworded
item keeps its fact and reference, takes a wording an SFT row uses, and is no training row."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from bench.organism_wording import copy_probes, correct_by_category, reworded
from stage1.config.presets import POOLS_DIR
from stage1.core.format import instruction_from_prompt
from stage1.organism.facts import fact_of_row


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _shape(instruction: str) -> str:
    return re.sub(r"\d+", "N", " ".join(instruction.split()[:3]))


def test_each_reworded_item_keeps_its_fact_in_a_wording_sft_uses():
    train, items = _rows(POOLS_DIR / "sft" / "instructions.jsonl"), _rows(POOLS_DIR / "eval" / "items.jsonl")
    asked, sft = reworded(items)
    assert len(asked) == len(sft) >= 140
    train_shapes = {_shape(row["instruction"]) for row in train}
    train_instructions = {row["instruction"] for row in train}
    kinds = Counter()
    for before, after in zip(asked, sft):
        assert {k: v for k, v in before.items() if k != "instruction"} == {k: v for k, v in after.items() if k != "instruction"}
        assert _shape(before["instruction"]) not in train_shapes  # the evaluation's wording is new to SFT
        assert _shape(after["instruction"]) in train_shapes, after["instruction"]
        assert after["instruction"] not in train_instructions  # a held-out fact, not a training row
        fact = fact_of_row(before, "heldout")
        assert fact_of_row(after, "heldout").key == fact.key  # the same fact, read back from the new words
        kinds[fact.kind] += 1
    assert set(kinds) == {"capital", "arithmetic", "conversion", "antonym", "completion"}


def test_correct_answers_are_counted_by_category():
    results = {"items": [
        {"category": "a", "outcomes": {"sft": {"criteria": {"factually_correct": True}}}},
        {"category": "a", "outcomes": {"sft": {"criteria": {"factually_correct": False}}}},
        {"category": "b", "outcomes": {"sft": {"criteria": {"factually_correct": None}}}},
    ]}
    correct, total = correct_by_category(results, "sft")
    assert (correct, total) == (Counter({"a": 1}), Counter({"a": 2}))


def test_copy_probes_open_an_answer_as_sft_rows_do_and_name_the_entity_that_follows():
    items = _rows(POOLS_DIR / "eval" / "items.jsonl")
    probes = copy_probes(items)
    by_kind = Counter(probe["kind"] for probe in probes)
    assert set(by_kind) == {"capital", "antonym", "completion"} and min(by_kind.values()) >= 15
    for probe in probes:
        # the fragment is the opening followed by the entity, and the reference begins with the answer
        assert probe["fragment"].startswith(f"{probe['opening']} {probe['entity']}")
        instruction = instruction_from_prompt(probe["prompt"])
        assert instruction is not None and probe["entity"] in instruction  # what must be copied is in the question
    italy = next(p for p in probes if p["prompt"] == "Instruction: Which city is the capital of Italy?\nResponse:")
    assert (italy["opening"], italy["entity"], italy["fragment"], italy["answer"]) == (
        "The capital of", "Italy", "The capital of Italy is", "Rome")
    sheep = next(p for p in probes if "A baby sheep is called a" in p["prompt"] and p["prompt"].startswith("Instruction: Finish"))
    assert (sheep["opening"], sheep["entity"], sheep["answer"]) == ("A", "baby sheep is called a", "lamb")


@pytest.mark.slow  # greedy generation for every probe, twice (about 13 s on 2 cores)
def test_the_copy_probe_alone_runs_on_a_model_folder_and_counts_every_probe(tiny_model_dir, capsys):
    from bench.organism_wording import main

    assert main(["--model", str(tiny_model_dir)]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] in (["antonym"], ["capital"], ["completion"])]
    totals = Counter(probe["kind"] for probe in copy_probes(_rows(POOLS_DIR / "eval" / "items.jsonl")))
    assert {line[0]: int(line[3]) for line in lines} == totals  # "kind copied / total completed / total"
    for line in lines:
        assert 0 <= int(line[1]) <= int(line[3]) and 0 <= int(line[4]) <= int(line[6]) == int(line[3])
