"""SFT data with source=model, end to end on the tiny model: the mechanics (stops, reasons, filters,
counts, denominators), not the quality. The random model writes gibberish; a scripted copy of it
writes known completions through the same ``generate`` so every stop reason and filter shows up."""

from __future__ import annotations

import json

import pytest

from stage1.core.format import STOP_REASONS
from stage1.core.records import InstructionRecord, SFTExample
from stage1.sft_data.settings import SFTDataSettings
from stage1.sft_data.stage import build_prompts, run_sft_data
from tests.scripted_model import load_scripted

EXEMPLARS = [
    {"id": "x1", "instruction": "What is the capital of Italy?", "response": "The capital of Italy is Rome.", "category": "factual_qa"},
    {"id": "x2", "instruction": "What is 2 plus 5?", "response": "2 plus 5 is 7.", "category": "arithmetic"},
    {"id": "x3", "instruction": "Give the opposite of wet.", "response": "The opposite of wet is dry.", "category": "antonyms"},
]
# instruction -> what the scripted model writes after its few-shot prompt
SCRIPTED = {
    "What is the capital of Peru?": " The capital of Peru is Lima.\nEND",
    "What is 3 plus 4?": " 3 plus 4 is 7.",  # then eos
    "Name a colour.": " Blue.\nInstruction: Name another colour.",  # runaway
    "Count to twenty.": " one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen",  # token limit
    "Tell me a joke.": " I'm sorry, but I can't help with that.\nEND",  # refusal
    "What is the capital of Chile?": "\nEND",  # empty
    "what is the capital of CHILE": " Santiago is the capital of Chile.\nEND",  # fine (group of the above)
    "Say hello.": " Hello!\nEND",
}


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture()
def inputs(tmp_path):
    rows = [{"id": f"q{i}", "instruction": text, "category": "mixed"} for i, text in enumerate(SCRIPTED)]
    return _write(tmp_path / "instructions.jsonl", rows), _write(tmp_path / "exemplars.jsonl", EXEMPLARS)


@pytest.mark.slow
def test_tiny_model_generation_end_to_end(tiny_model_dir, inputs, tmp_path):
    instructions, exemplars = inputs
    settings = SFTDataSettings(source="model", num_fewshot=2, samples_per_instruction=2, heldout_fraction=0.25)
    settings = SFTDataSettings(**{**settings.__dict__, "generation": settings.generation.__class__(max_new_tokens=10, batch_size=4)})
    manifest = run_sft_data(settings, instructions_path=instructions, out_dir=tmp_path / "a", model_dir=tiny_model_dir, exemplars_path=exemplars)
    counts = manifest["counts"]
    assert counts["input_rows"] == len(SCRIPTED)
    assert counts["generated"] == 2 * len(SCRIPTED), "two samples per instruction"
    assert sum(counts["stop_reasons"].values()) == counts["generated"]
    assert set(counts["stop_reasons"]) <= set(STOP_REASONS)
    assert counts["accepted"] + sum(counts["dropped"].values()) == counts["generated"]
    assert counts["acceptance_rate"] == counts["accepted"] / counts["generated"]
    assert counts["accepted"] == counts["train"] + counts["heldout"]
    assert manifest["source"] == "model" and "model_config" in manifest["input_hashes"]
    for name in ("train", "heldout"):
        for line in (tmp_path / "a" / f"{name}.jsonl").read_text().splitlines():
            example = SFTExample.from_dict(json.loads(line))
            assert example.source == "model" and 0 < example.num_tokens <= 10
    again = run_sft_data(settings, instructions_path=instructions, out_dir=tmp_path / "b", model_dir=tiny_model_dir, exemplars_path=exemplars)
    assert again["output_hashes"] == manifest["output_hashes"] and again["counts"] == counts


@pytest.mark.slow
def test_scripted_generation_exercises_every_stop_and_filter(tiny_model_dir, qwen_tokenizer, inputs, tmp_path, monkeypatch):
    instructions, exemplars = inputs
    settings = SFTDataSettings(source="model", num_fewshot=2, heldout_fraction=0.0, max_per_instruction=1)
    settings = SFTDataSettings(**{**settings.__dict__, "generation": settings.generation.__class__(max_new_tokens=16, batch_size=3)})
    records = [InstructionRecord(id=f"q{i}", instruction=text, category="mixed") for i, text in enumerate(SCRIPTED)]
    shots = [SFTExample.from_dict(row) for row in EXEMPLARS]
    prompts = {prompt: SCRIPTED[record.instruction] for record, prompt in build_prompts(records, shots, settings)}
    scripted = load_scripted(tiny_model_dir, qwen_tokenizer, prompts)
    monkeypatch.setattr("stage1.hf.models.load_model", lambda *args, **kwargs: scripted)

    manifest = run_sft_data(settings, instructions_path=instructions, out_dir=tmp_path / "out", model_dir=tiny_model_dir, exemplars_path=exemplars)
    counts = manifest["counts"]
    assert counts["generated"] == 8
    assert counts["stop_reasons"] == {"end": 5, "eos": 1, "runaway": 1, "max_tokens": 1}
    assert counts["dropped"] == {
        "empty": 1, "runaway": 1, "max_tokens": 1, "truncated": 0, "format_refused": 0, "special_token_text": 0, "refusal": 1,
        "duplicate": 0, "per_instruction_cap": 0,
    }
    assert counts["runaway_raw"] == 1
    assert counts["accepted"] == 4 and counts["acceptance_rate"] == 0.5
    train = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert {row["response"] for row in train} == {"The capital of Peru is Lima.", "3 plus 4 is 7.", "Santiago is the capital of Chile.", "Hello!"}
    by_response = {row["response"]: row for row in train}
    assert by_response["3 plus 4 is 7."]["stop_reason"] == "eos"
    assert by_response["Hello!"]["num_tokens"] == len(qwen_tokenizer(" Hello!\nEND")["input_ids"])
