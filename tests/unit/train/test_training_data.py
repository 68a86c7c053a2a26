"""Training rows: pairs are checked against the shared format byte for byte (prompt and chosen are
exactly what ``render_prompt``/``render_completion`` make of the text they carry), deliberately
malformed format-violation negatives still pass, and an unknown overlong policy is an error."""

from __future__ import annotations

import random
import typing

import pytest

from stage1.core.errors import InputError
from stage1.core.format import render_completion, render_prompt
from stage1.core.records import PreferencePair, RecordList, SFTExample
from stage1.negatives import format_violation
from stage1.train.data import OVERLONG_POLICIES, build_preference_rows, build_sft_rows, check_pair_format
from stage1.train.settings import TrainingSettings

PROMPT = render_prompt("What is the capital of France?")
CHOSEN = render_completion("Paris is the capital.")
REJECTED = render_completion("Lyon is the capital.")


def _pair(prompt: str = PROMPT, chosen: str = CHOSEN, rejected: str = REJECTED, kind: str = "factually_incorrect") -> PreferencePair:
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, instruction_id="i1", category="general",
                          negative_kind=kind, split="train")


def _source(tmp_path, rows: int = 2):
    path = tmp_path / "pairs.jsonl"
    path.write_text("{}\n" * rows)
    return path


def test_a_rendered_pair_passes():
    check_pair_format(_pair(), "pairs.jsonl", 0)
    check_pair_format(_pair(rejected=render_completion("I can't help with that."), kind="unwarranted_refusal"), "p", 0)


@pytest.mark.parametrize(
    "field, pair",
    [
        ("prompt", _pair(prompt="Instruction: What is\r\nthe capital?\nResponse:")),
        ("prompt", _pair(prompt="Instruction: Cafe\u0301 or tea?\nResponse:")),  # not NFC
        ("prompt", _pair(prompt="Instruction:  What is the capital of France?\nResponse:")),  # two spaces
        ("prompt", _pair(prompt="Instruction: What is the capital of France? \nResponse:")),  # space before newline
        ("prompt", _pair(prompt="Instruction: Q?\nResponse: A.\nEND\n\nInstruction: Q2?\nResponse:")),  # two exchanges
        ("prompt", _pair(prompt="Instruction: \nResponse:")),  # empty instruction
        ("chosen", _pair(chosen=" Paris is\r\nthe capital.\nEND")),
        ("chosen", _pair(chosen=" Caf\u0065\u0301 au lait.\nEND")),  # not NFC
        ("chosen", _pair(chosen="  Paris is the capital.\nEND")),  # two leading spaces
        ("chosen", _pair(chosen=" Paris is the capital. \nEND")),  # trailing space
        ("chosen", _pair(chosen=" Paris.\nEND\nLyon.\nEND")),  # an END line inside
        ("chosen", _pair(chosen=" Paris.\nResponse: Lyon.\nEND")),  # a format tag line inside
        ("chosen", _pair(chosen="Paris is the capital.\nEND")),  # no leading space
        ("rejected", _pair(rejected=" Lyon is\r\nthe capital.\nEND")),
        ("rejected", _pair(rejected=" Lyon.\nEND\nMore.\nEND", kind="off_topic")),
        ("rejected", _pair(rejected=" Lyon is the capital.", kind="verbose_vague")),  # only format violations lack END
        ("rejected", _pair(rejected=" Lyon\r\nis the capital.", kind="format_violation")),
        ("rejected", _pair(rejected=" Caf\u0065\u0301.", kind="format_violation")),
    ],
)
def test_pairs_off_the_format_byte_for_byte_are_refused_naming_file_line_and_field(tmp_path, field, pair):
    source = _source(tmp_path)
    with pytest.raises(InputError) as caught:
        check_pair_format(pair, source, 2)  # the caller gives the line: record_line of the records read
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(source), 2, field)
    assert str(caught.value).startswith(f"{source}:2: field '{field}'")


def test_the_error_says_where_the_text_differs(tmp_path):
    with pytest.raises(InputError, match=r"character 9.*'\\r\\n"):
        check_pair_format(_pair(chosen=" Paris is\r\nthe capital.\nEND"), _source(tmp_path), 0)
    with pytest.raises(InputError, match="'END'"):
        check_pair_format(_pair(chosen=" Paris.\nEND\nLyon.\nEND"), _source(tmp_path), 0)


def test_legitimate_format_violation_negatives_pass():
    """Every kind of format violation the negatives stage writes is accepted: they are malformed on purpose."""
    example = SFTExample(id="i1", instruction="Name three colours as a list.", response="Red, green and blue are colours.")
    rng = random.Random(0)
    completions = [
        format_violation.missing_end(example),
        format_violation.runaway(example, "Name a fruit.", "Apple."),
        format_violation.runaway(example, "Name a fruit.", None),
        format_violation.truncated(example, rng),
        format_violation.ignoring_constraint(example, "one_sentence", None, rng),
        format_violation.ignoring_constraint(example, "n_items", 3, rng),
        " Red, green\n\nand blue.",  # blank lines inside, no END
    ]
    assert all(completions)
    prompt, chosen = render_prompt(example.instruction), render_completion(example.response)
    for rejected in completions:
        check_pair_format(_pair(prompt, chosen, rejected, kind="format_violation"), "pairs.jsonl", 0)


def test_special_token_text_in_a_rendered_pair_is_text_not_a_format_error():
    check_pair_format(_pair(render_prompt("Say <|endoftext|>."), render_completion("<|endoftext|>")), "p", 0)


def test_the_policies_are_the_ones_the_config_accepts():
    hints = typing.get_type_hints(TrainingSettings)
    assert typing.get_args(hints["overlong"]) == OVERLONG_POLICIES


@pytest.mark.parametrize("policy", ["truncate", "Drop", "", None])
def test_an_unknown_overlong_policy_raises_naming_the_allowed_values(qwen_tokenizer, policy):
    examples = [SFTExample(id="a", instruction="Q?", response="word " * 200), SFTExample(id="b", instruction="Q?", response="A.")]
    with pytest.raises(ValueError, match="'error', 'drop'") as caught:
        build_sft_rows(qwen_tokenizer, examples, max_length=32, overlong=policy, source="rows")
    assert repr(policy) in str(caught.value)
    with pytest.raises(ValueError, match="'error', 'drop'"):
        build_sft_rows(qwen_tokenizer, examples[1:], max_length=32, overlong=policy, source="rows")
    pairs = [_pair(), _pair(rejected=render_completion("word " * 200))]
    with pytest.raises(ValueError, match="'error', 'drop'"):
        build_preference_rows(qwen_tokenizer, pairs, max_length=32, overlong=policy, source="pairs")


def test_known_policies_still_work(qwen_tokenizer, tmp_path):
    source = _source(tmp_path)
    # As read_records returns them: each record knows its file line, so no message re-reads the file.
    examples = RecordList([SFTExample(id="a", instruction="Q?", response="word " * 200), SFTExample(id="b", instruction="Q?", response="A.")], [1, 3])
    kept = build_sft_rows(qwen_tokenizer, examples, max_length=32, overlong="drop", source=source)
    assert kept.dropped_ids == ("a",) and len(kept.rows) == 1
    with pytest.raises(InputError) as caught:
        build_sft_rows(qwen_tokenizer, examples, max_length=32, overlong="error", source=source)
    assert caught.value.line == 1
