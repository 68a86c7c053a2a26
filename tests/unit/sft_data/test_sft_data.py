"""SFT data: filters with honest denominators, grouped deterministic splits, the file source end to end,
and bad input stopping the stage before anything is written."""

from __future__ import annotations

import errno
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.config.typed import settings_from_dict
from stage1.core.criteria import is_refusal
from stage1.core.errors import ConfigError, GateError, InputError
from stage1.core.records import InstructionRecord, SFTExample
from stage1.core.splits import heldout_groups, split_by_instruction
from stage1.core.text_keys import dedup_key
from stage1.sft_data.filters import (
    DROP_CAP,
    DROP_DUPLICATE,
    DROP_EMPTY,
    DROP_FORMAT,
    DROP_MAX_TOKENS,
    DROP_REFUSAL,
    DROP_RUNAWAY,
    DROP_SPECIAL_TOKEN,
    DROP_TRUNCATED,
    Candidate,
    compile_refusal_pattern,
    filter_candidates,
    refusal_phrase,
)
from stage1.sft_data.settings import SFTDataSettings
from stage1.sft_data.stage import build_prompts, choose_exemplars, run_sft_data


def _candidate(i, instruction, response, **kw):
    return Candidate(id=str(i), instruction=instruction, category="c", response=response, source="model", **kw)


def test_each_filter_drops_and_counts_with_generated_as_denominator():
    rows = [
        _candidate(1, "A?", "Fine answer.", stop_reason="end"),
        _candidate(2, "B?", "", stop_reason="end"),
        _candidate(3, "C?", "Kept before runaway.", stop_reason="runaway", runaway=True),
        _candidate(4, "D?", "cut off mid", stop_reason="max_tokens"),
        _candidate(5, "E?", "ok\nResponse: again", stop_reason="eos"),
        _candidate(6, "F?", "I'm sorry, but I can't help with that.", stop_reason="end"),
        _candidate(7, "a ?", "FINE answer", stop_reason="end"),  # duplicate of 1 after normalisation
        _candidate(8, "A?", "A different answer.", stop_reason="end"),  # over the cap of 1 for "a"
        _candidate(9, "G?", "Another fine answer.", stop_reason="eos"),
        _candidate(10, "H?", "The steps are:", stop_reason="end"),
        _candidate(11, "I?", "```python\nprint(1)", stop_reason="end"),
        _candidate(12, "J?", "4", stop_reason="end"),
        _candidate(13, "K?", "Done.<|endoftext|>", stop_reason="eos"),
    ]
    result = filter_candidates(rows, max_per_instruction=1)
    assert [e.id for e in result.kept] == ["1", "9", "12"], "a short answer such as '4' is not a truncation"
    counts = result.counts()
    assert counts["generated"] == 13 and counts["accepted"] == 3
    assert counts["acceptance_rate"] == pytest.approx(3 / 13)
    assert counts["dropped"] == {
        DROP_EMPTY: 1, DROP_RUNAWAY: 1, DROP_MAX_TOKENS: 1, DROP_TRUNCATED: 2, DROP_FORMAT: 1, DROP_SPECIAL_TOKEN: 1,
        DROP_REFUSAL: 1, DROP_DUPLICATE: 1, DROP_CAP: 1,
    }
    assert counts["drop_rates"][DROP_SPECIAL_TOKEN] == pytest.approx(1 / 13)
    assert counts["generated"] == counts["accepted"] + sum(counts["dropped"].values())
    assert counts["runaway_raw"] == 1 and counts["runaway_rate"] == pytest.approx(1 / 13)
    assert counts["stop_reasons"] == {"end": 8, "eos": 3, "max_tokens": 1, "runaway": 1}


@pytest.mark.parametrize("token", ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>"])
def test_special_token_text_is_dropped_so_the_sft_stage_can_read_every_kept_row(token):
    rows = [
        _candidate(1, "A?", f"Paris.{token}", stop_reason="eos"),
        _candidate(2, "B?", f"{token}\nassistant: Lima.", stop_reason="end"),
        _candidate(3, "C?", "Pipes < | > and <| |> are plain text.", stop_reason="end"),  # no token name inside
        _candidate(4, "D?", "Rome.", stop_reason="end"),
    ]
    result = filter_candidates(rows)
    assert [e.id for e in result.kept] == ["3", "4"]
    counts = result.counts()
    assert counts["dropped"][DROP_SPECIAL_TOKEN] == 2 and counts["drop_rates"][DROP_SPECIAL_TOKEN] == 2 / 4
    assert token in counts["examples_of_dropped"][DROP_SPECIAL_TOKEN][0]
    for example in result.kept:
        assert SFTExample.from_dict(example.to_dict()) == example, "the SFT stage reads the row back unchanged"


def test_a_rescued_runaway_is_kept_but_still_counted():
    rows = [_candidate(1, "A?", "Kept.", stop_reason="runaway", runaway=True)]
    result = filter_candidates(rows, keep_rescued_runaways=True)
    assert [e.response for e in result.kept] == ["Kept."]
    assert result.counts()["runaway_raw"] == 1
    assert result.counts()["dropped"][DROP_RUNAWAY] == 0


def test_the_cap_applies_across_the_whole_dataset_in_input_order():
    rows = [_candidate(i, "Same question?" if i % 2 else "same QUESTION", f"answer {i}") for i in range(10)]
    result = filter_candidates(rows, max_per_instruction=3)
    assert [e.id for e in result.kept] == ["0", "1", "2"]
    assert result.counts()["dropped"][DROP_CAP] == 7


@pytest.mark.parametrize(
    "text",
    [
        "I cannot stress this enough: drink water.",
        "I'm sorry to hear that. Restart the router first.",
        "Water boils at 100 C. I can't think of a simpler rule.",
        "I apologize for the delay: the answer is 42.",
        "Unfortunately, I think the answer is no.",
        "I won't lie, it is hard. Practise daily.",
        "You can't divide by zero.",
    ],
)
def test_real_answers_that_open_with_polite_phrases_are_kept(text):
    """The filter and evaluation share one definition: an answer ``criteria.is_refusal`` accepts is kept."""
    assert not is_refusal(text)
    result = filter_candidates([_candidate(1, "Q?", text)])
    assert result.counts()["dropped"][DROP_REFUSAL] == 0 and len(result.kept) == 1


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I cannot help with that request.",
        "As an AI, I have no opinion.",
        "Sure. I must decline to answer.",
        "That's not something I can do.",
        "I\u2019m unable to provide that.",
    ],
)
def test_refusals_by_the_evaluation_definition_are_dropped(text):
    assert is_refusal(text)
    result = filter_candidates([_candidate(1, "Q?", text)])
    assert result.counts()["dropped"][DROP_REFUSAL] == 1 and result.kept == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No way. Ask someone else.", "No way"),
        ("Paris is the capital.\nnope, not today.", "nope"),
        ("The no-wayfarer is a fine boat.", None),
        ("Nopes are nice.", None),
    ],
)
def test_extra_refusal_phrases_open_a_sentence_at_a_word_boundary(text, expected):
    pattern = compile_refusal_pattern(["No way", "Nope"])
    found = refusal_phrase(text, pattern)
    assert (found.casefold() if found else None) == (expected.casefold() if expected else None)
    result = filter_candidates([_candidate(1, "Q?", text)], refusal_phrases=["No way", "Nope"])
    assert result.counts()["dropped"][DROP_REFUSAL] == (expected is not None)


def test_extra_phrases_add_to_the_shared_definition_and_never_replace_it():
    assert compile_refusal_pattern(()) is None
    refusal, extra = _candidate(1, "A?", "I cannot help with that."), _candidate(2, "B?", "No way. Ask someone else.")
    assert [e.id for e in filter_candidates([refusal, extra]).kept] == ["2"], "no extra phrases by default"
    assert filter_candidates([refusal, extra], refusal_phrases=("No way",)).kept == []


# ---------------------------------------------------------------- splits


instructions = st.lists(st.sampled_from(["Q one?", "q ONE", "Q two?", "Q three", "q three!", "Q four", "Q five"]), min_size=0, max_size=30)


@given(instructions, st.integers(0, 5), st.sampled_from([0.0, 0.2, 0.5]))
def test_splits_never_share_a_normalised_instruction(rows, seed, fraction):
    """Grouped split: no normalised instruction on both sides; every row on exactly one side."""
    train, heldout = split_by_instruction(rows, lambda r: r, fraction, seed)
    assert sorted(train + heldout) == sorted(rows)
    assert not {dedup_key(r) for r in train} & {dedup_key(r) for r in heldout}


@given(instructions, st.integers(0, 5))
def test_splits_are_deterministic_and_independent_of_row_order(rows, seed):
    """Same seed, same groups held out, whatever order the rows come in."""
    keys = [dedup_key(r) for r in rows]
    assert heldout_groups(keys, 0.3, seed) == heldout_groups(list(reversed(keys)), 0.3, seed)


def test_split_sizes_follow_the_fraction_and_keep_both_sides():
    keys = [f"k{i}" for i in range(100)]
    assert len(heldout_groups(keys, 0.1, 0)) == 10
    assert heldout_groups(keys, 0.1, 0) != heldout_groups(keys, 0.1, 1)
    assert len(heldout_groups(["a", "b"], 0.01, 0)) == 1
    assert heldout_groups(["a"], 0.5, 0) == set()
    assert heldout_groups(keys, 0.0, 0) == set()
    with pytest.raises(ValueError):
        heldout_groups(keys, 1.0, 0)


# ---------------------------------------------------------------- few-shot prompts


def test_exemplars_are_seeded_and_never_the_instruction_itself():
    pool = [SFTExample(id=f"x{i}", instruction=f"Question {i}?", response=f"Answer {i}.") for i in range(8)]
    record = InstructionRecord(id="q", instruction="question 3")
    first = choose_exemplars(pool, record, 7, seed=0)
    assert ("Question 3?", "Answer 3.") not in first and len(first) == 7
    assert choose_exemplars(pool, record, 3, seed=0) == choose_exemplars(pool, record, 3, seed=0)
    prompts = build_prompts([record], pool, SFTDataSettings(source="model", num_fewshot=2, samples_per_instruction=2))
    assert len(prompts) == 2 and prompts[0] == prompts[1]
    assert prompts[0][1].endswith("\n\nInstruction: question 3\nResponse:")
    assert prompts[0][1].count("\nEND\n\nInstruction: ") == 2


# ---------------------------------------------------------------- the stage with source=file


def _write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _pool(n=40):
    return [{"id": f"i{i}", "instruction": f"What is {i} plus {i}?", "response": f"{i} plus {i} is {2 * i}.", "category": "arithmetic"} for i in range(n)]


def test_file_source_writes_train_heldout_and_manifest_last(tmp_path):
    rows = _pool() + [
        {"id": "dup", "instruction": "what is 3 plus 3", "response": "3 plus 3 is 6", "category": "arithmetic"},
        {"id": "ref", "instruction": "Tell me a joke.", "response": "I'm sorry, I cannot do that.", "category": "x"},
    ]
    source = _write_rows(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    manifest = run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=out)
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    heldout = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert len(train) + len(heldout) == 40 and len(heldout) == 4
    counts = manifest["counts"]
    assert counts["generated"] == 42 and counts["accepted"] == 40
    assert counts["dropped"]["duplicate"] == 1 and counts["dropped"]["refusal"] == 1
    assert manifest["config"]["heldout_fraction"] == 0.1 and manifest["seed"] == 0
    assert set(manifest["output_hashes"]) == {"train", "heldout"} and "instructions" in manifest["input_hashes"]
    assert (out / "manifest.json").stat().st_mtime_ns >= (out / "train.jsonl").stat().st_mtime_ns
    again = run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=tmp_path / "again")
    assert again["output_hashes"] == manifest["output_hashes"], "same inputs and seed, same bytes"


@pytest.mark.parametrize(
    "line, field, message",
    [
        ('{"id": "a", "instruction": "Q?", "response": "A."', None, "malformed JSON"),
        ('{"id": "a", "response": "A."}', "instruction", "missing"),
        ('{"id": "a", "instruction": 5, "response": "A."}', "instruction", "expected str"),
        ('{"id": "a", "instruction": "Q?", "response": "A.\\nEND"}', "response", "'END'"),
        ('{"id": "a", "instruction": "Q?", "response": "A.", "colour": "red"}', "colour", "unknown field"),
    ],
)
def test_a_bad_row_stops_the_stage_naming_file_line_and_field(tmp_path, line, field, message):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(_pool(1)[0]) + "\n" + line + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(InputError) as caught:
        run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=out)
    assert caught.value.line == 2 and caught.value.field == field
    assert message in str(caught.value) and str(caught.value).startswith(f"{source}:2")
    assert not out.exists(), "nothing is written when the input is bad"


def test_invalid_utf8_names_the_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(json.dumps(_pool(1)[0]).encode() + b'\n{"id": "b", "instruction": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"in.jsonl:2: invalid UTF-8"):
        run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=tmp_path / "out")


def test_skip_counts_bad_rows_in_the_manifest(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join([json.dumps(r) for r in _pool(5)] + ['{"id": "x", "response": "A."}', '{"id": "y", "instruction": "", "response": "A."}']) + "\n"
    )
    manifest = run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=tmp_path / "out", on_bad_rows="skip")
    assert manifest["bad_rows"]["count"] == 2
    assert manifest["bad_rows"]["first"][0].startswith(f"{source}:6: field 'instruction'")
    assert manifest["counts"]["input_rows"] == 7 and manifest["counts"]["generated"] == 5


def test_duplicate_ids_are_refused(tmp_path):
    rows = _pool(2)
    rows[1]["id"] = rows[0]["id"]
    with pytest.raises(InputError, match="duplicate id 'i0'"):
        run_sft_data(SFTDataSettings(), instructions_path=_write_rows(tmp_path / "in.jsonl", rows), out_dir=tmp_path / "o")


def test_the_leakage_gate_runs_when_eval_items_are_given(tmp_path):
    source = _write_rows(tmp_path / "in.jsonl", _pool())
    items = _write_rows(tmp_path / "items.jsonl", [{"id": "e1", "instruction": "What is 7 plus 7?"}])
    out = tmp_path / "out"
    with pytest.raises(GateError, match="'e1'"):
        run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=out, eval_items_path=items)
    assert not out.exists()
    with pytest.raises(GateError, match="not found"):
        run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=out, eval_items_path=tmp_path / "missing.jsonl")
    clean = _write_rows(tmp_path / "clean.jsonl", [{"id": "e1", "instruction": "Name a colour."}])
    manifest = run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=out, eval_items_path=clean)
    assert manifest["leakage"]["leaks"] == 0 and "eval_items" in manifest["input_hashes"]


def test_settings_come_from_a_yaml_section_and_bad_values_name_the_key():
    settings = settings_from_dict(
        SFTDataSettings, {"source": "model", "generation": {"max_new_tokens": 8}, "refusal_phrases": ["No way"]}, section="sft_data"
    )
    assert settings.generation.max_new_tokens == 8 and settings.refusal_phrases == ("No way",)
    with pytest.raises(ConfigError, match="sft_data.heldout_fraction"):
        SFTDataSettings(heldout_fraction=1.0)
    with pytest.raises(ConfigError, match="did you mean 'heldout_fraction'"):
        settings_from_dict(SFTDataSettings, {"heldout_fractio": 0.2}, section="sft_data")
    with pytest.raises(ConfigError, match="sft_data.source"):
        settings_from_dict(SFTDataSettings, {"source": "web"}, section="sft_data")


def test_model_source_needs_a_model_and_exemplars(tmp_path):
    source = _write_rows(tmp_path / "in.jsonl", _pool(3))
    with pytest.raises(ConfigError, match="exemplar"):
        run_sft_data(SFTDataSettings(source="model"), instructions_path=source, out_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="model folder"):
        run_sft_data(SFTDataSettings(source="model", num_fewshot=0), instructions_path=source, out_dir=tmp_path / "o")


@pytest.mark.parametrize("failing_write", [1, 2])
def test_a_failed_write_leaves_no_output_of_this_run(tmp_path, monkeypatch, failing_write):
    """Disk full on the first or the second data file: neither train.jsonl nor heldout.jsonl (nor a
    manifest, nor a temp file) is left, rather than a train.jsonl with no heldout.jsonl beside it."""
    source = _write_rows(tmp_path / "in.jsonl", _pool())
    out = tmp_path / "out"
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == failing_write:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=out)
    monkeypatch.undo()
    assert not out.exists() or list(out.iterdir()) == []


def test_a_lone_surrogate_stops_the_stage_before_anything_is_written(tmp_path):
    rows = [json.dumps(row) for row in _pool()]
    rows[7] = '{"id": "s", "instruction": "a\\ud800b", "response": "Fine.", "category": "x"}'
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    with pytest.raises(InputError) as caught:
        run_sft_data(SFTDataSettings(), instructions_path=source, out_dir=out)
    assert (caught.value.line, caught.value.field) == (8, "instruction")
    assert "not encodable as UTF-8" in str(caught.value)
    assert not out.exists()
