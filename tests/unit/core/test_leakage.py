"""The leakage gate fails closed: exact and near copies of evaluation instructions are caught, missing
evidence is an error, and shared templates are not mistaken for copies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.errors import ConfigError, GateError, InputError
from stage1.core.leakage import LeakageSettings, find_leaks
from stage1.core.text_keys import contains_words, dedup_key, word_ngrams
from stage1.io.records import leakage_gate, read_eval_instructions

EVAL = [
    ("e1", "What is the capital of France?"),
    ("e2", "Name the capital of Peru in one word."),
    ("e3", "Define gravity."),
    ("e4", "How many minutes are in 7 hours?"),
]


def _leaked(training: list[str], settings: LeakageSettings = LeakageSettings()) -> set[str]:
    rows = [(f"t{i}", text) for i, text in enumerate(training)]
    return {leak.eval_id for leak in find_leaks(EVAL, {"sft_train": rows}, settings)}


@pytest.mark.parametrize(
    "training, expected",
    [
        (["what is the CAPITAL of france"], {"e1"}),  # case and punctuation
        (["  What   is the capital of France ?!"], {"e1"}),  # whitespace
        (["Name the capital of Peru in one word, please."], {"e2"}),  # words added after a copy
        (["Quick: what is the capital of France? Answer briefly."], {"e1"}),  # copy inside a longer text
        (["Please define gravity in one sentence."], {"e3"}),  # a short item inside a longer text
        (["How many minutes are in 7 hours and 3 minutes?"], {"e4"}),
    ],
)
def test_copies_are_caught(training, expected):
    assert _leaked(training) == expected


@pytest.mark.parametrize(
    "training",
    [
        ["What is the capital of Spain?"],  # same template, different fact: 3 of 4 trigrams
        ["Name the capital of Chile in one word."],
        ["Define gravitation."],  # whole words only
        ["How many minutes are in 8 hours?"],
        ["Capital of France?"],  # a short training text does not contain the longer eval item
    ],
)
def test_shared_templates_are_not_copies(training):
    assert _leaked(training) == set()


def test_threshold_is_inclusive():
    # 4 of the 5 trigrams of the eval item: containment 0.8 exactly.
    eval_items = [("e", "one two three four five six seven")]
    training = {"t": [("x", "one two three four five six")]}
    assert len(find_leaks(eval_items, training, LeakageSettings(threshold=0.8))) == 1
    assert find_leaks(eval_items, training, LeakageSettings(threshold=0.81)) == []


def test_every_offender_is_reported_once_per_training_set():
    training = {
        "sft_train": [("a", "What is the capital of France?"), ("b", "what is the capital of france")],
        "dpo_pairs": [("c", "Define gravity.")],
    }
    leaks = find_leaks(EVAL, training)
    assert sorted((leak.training_set, leak.train_id, leak.eval_id) for leak in leaks) == [
        ("dpo_pairs", "c", "e3"),
        ("sft_train", "a", "e1"),
    ]
    assert all(leak.match == "exact" for leak in leaks)


def _write_eval(path, items):
    path.write_text("".join(json.dumps({"id": i, "instruction": text, "category": "x"}) + "\n" for i, text in items))
    return path


def test_gate_raises_listing_offenders(tmp_path):
    path = _write_eval(tmp_path / "items.jsonl", EVAL)
    with pytest.raises(GateError) as caught:
        leakage_gate(path, {"sft_train": [("t9", "Define gravity")]})
    message = str(caught.value)
    assert "1 held-out evaluation instruction(s)" in message
    assert "'e3'" in message and "'t9'" in message and "sft_train" in message


def test_gate_passes_clean_data_with_a_summary(tmp_path):
    path = _write_eval(tmp_path / "items.jsonl", EVAL)
    summary = leakage_gate(path, {"sft_train": [("t", "What is 2 plus 2?")], "dpo_pairs": []})
    assert summary["leaks"] == 0 and summary["eval_items"] == 4
    assert summary["training_rows"] == {"dpo_pairs": 0, "sft_train": 1}


def test_missing_or_empty_evidence_fails_closed(tmp_path):
    with pytest.raises(GateError, match="not found"):
        leakage_gate(tmp_path / "absent.jsonl", {"sft_train": []})
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(GateError, match="no evaluation items"):
        leakage_gate(tmp_path / "empty.jsonl", {"sft_train": []})


def test_bad_eval_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"id": "a", "instruction": "ok"}) + "\n" + json.dumps({"id": "b"}) + "\n")
    with pytest.raises(InputError) as caught:
        read_eval_instructions(path)
    assert caught.value.line == 2 and caught.value.field == "instruction"
    assert f"{path}:2: field 'instruction'" in str(caught.value)


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="leakage.threshold"):
        LeakageSettings(threshold=0.0)
    with pytest.raises(ConfigError, match="leakage.ngram"):
        LeakageSettings(ngram=0)


def test_dedup_key_ignores_case_whitespace_and_punctuation_but_keeps_symbols():
    assert dedup_key("  Hello,   WORLD!! ") == "hello world"
    assert dedup_key("“Ça” — va?") == "ça va"
    assert dedup_key("2 + 3") != dedup_key("2 = 3")
    assert contains_words("I have no idea.", "No.")
    assert not contains_words("concatenate", "cat")
    assert not contains_words("anything", "  ...  ")


words = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=0, max_size=12)


@given(words, st.integers(min_value=1, max_value=4))
def test_ngrams_are_the_consecutive_runs(sequence, n):
    """Every n-gram is a slice of the words, and there are at most len - n + 1 of them."""
    grams = word_ngrams(sequence, n)
    assert len(grams) <= max(0, len(sequence) - n + 1)
    assert all(any(list(gram) == sequence[i : i + n] for i in range(len(sequence))) for gram in grams)


@given(st.text(min_size=1, max_size=40))
def test_an_instruction_always_leaks_into_itself(text):
    """Whatever the text, a training copy of an evaluation instruction is caught."""
    if not dedup_key(text):
        return
    assert find_leaks([("e", text)], {"t": [("x", f"  {text} !")]})
