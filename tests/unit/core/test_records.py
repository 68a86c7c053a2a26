"""Records round-trip through their dict form; bad rows are reported with file, line and field, or
skipped and counted; every input format gives the same records."""

from __future__ import annotations

import csv
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from stage1.core.errors import InputError
from stage1.core.format import check_text, render_completion, render_prompt
from stage1.core.records import (
    NEGATIVE_KINDS,
    SPECIAL_TOKEN_TEXT,
    BadRows,
    InstructionRecord,
    NegativeRecord,
    PreferencePair,
    RecordError,
    SFTExample,
    check_unique_ids,
    plain_fields,
)
from stage1.core.text_keys import dedup_key
from stage1.io.records import read_records
from tests.strategies import format_text

record_text = format_text.filter(lambda t: not SPECIAL_TOKEN_TEXT.search(t)).map(lambda t: check_text(t, "text"))
labels = st.sampled_from(["general", "factual_qa", "lists", "kategorie ü"])
ids = st.one_of(st.integers(0, 10**6).map(str), st.text(alphabet="abcxyz-_0123", min_size=1, max_size=8))


@given(ids, record_text, record_text, labels, st.sampled_from(["file", "model"]), st.none() | st.integers(1, 99), st.booleans())
def test_sft_example_round_trips(id_, instruction, response, category, source, num_tokens, refusal_expected):
    """from_dict(to_dict(x)) == x, through JSON too."""
    example = SFTExample(id_, instruction, response, category, source, "end" if num_tokens else None, num_tokens, refusal_expected)
    assert SFTExample.from_dict(json.loads(json.dumps(example.to_dict()))) == example


@given(ids, record_text, labels, st.booleans())
def test_instruction_record_round_trips(id_, instruction, category, refusal_expected):
    record = InstructionRecord(id_, instruction, category, refusal_expected)
    assert InstructionRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


@pytest.mark.parametrize("record", [InstructionRecord, SFTExample])
def test_refusal_expected_defaults_to_false_and_must_be_a_boolean(record):
    row = {"id": "a", "instruction": "How do I pick a lock?", "response": "I won't help with that."}
    if record is InstructionRecord:
        del row["response"]
    assert record.from_dict(row).refusal_expected is False
    assert record.from_dict({**row, "refusal_expected": True}).refusal_expected is True
    for bad in ("yes", 1, "true"):
        with pytest.raises(RecordError, match="field 'refusal_expected': expected bool"):
            record.from_dict({**row, "refusal_expected": bad})


@given(ids, st.sampled_from(NEGATIVE_KINDS), record_text, st.none() | ids)
def test_negative_record_round_trips_and_plain_fields_match(id_, kind, text, source_id):
    negative = NegativeRecord(id_, kind, render_completion(text), "rule", source_id)
    assert NegativeRecord.from_dict(json.loads(json.dumps(negative.to_dict()))) == negative
    assert plain_fields(negative) == negative.to_dict()


@given(ids, record_text, record_text, record_text, st.sampled_from(NEGATIVE_KINDS), st.sampled_from(["train", "eval"]))
def test_preference_pair_round_trips(id_, instruction, chosen, rejected, kind, split):
    assume(dedup_key(chosen) != dedup_key(rejected))
    pair = PreferencePair(render_prompt(instruction), render_completion(chosen), render_completion(rejected), id_, "c", kind, split)
    assert PreferencePair.from_dict(json.loads(json.dumps(pair.to_dict()))) == pair
    assert plain_fields(pair) == pair.to_dict()


@pytest.mark.parametrize("rejected", [" Paris.\nEND", " paris\nEND", " PARIS!\nEND", "  Paris .\n END"])
def test_pair_with_rejected_equal_to_chosen_after_normalisation_is_refused(rejected):
    row = {"prompt": "p", "chosen": " Paris.\nEND", "rejected": rejected, "instruction_id": "1", "category": "c",
           "negative_kind": "off_topic", "split": "train"}
    with pytest.raises(RecordError, match="rejected.*equals chosen"):
        PreferencePair.from_dict(row)
    assert PreferencePair.from_dict({**row, "rejected": " Paris."}).rejected == " Paris.", "a missing END is a real difference"


ROWS = [
    {"id": "a", "instruction": "What is 2 plus 2?", "response": "2 plus 2 is 4.", "category": "arithmetic"},
    {"id": "b", "instruction": "Capital of Peru?", "response": "Lima.", "category": "factual_qa"},
]


def _write_all_formats(folder):
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (folder / "rows.json").write_text(json.dumps(ROWS))
    with open(folder / "rows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    return [folder / "rows.jsonl", folder / "rows.json", folder / "rows.csv"]


def test_every_file_format_gives_the_same_records(tmp_path):
    paths = _write_all_formats(tmp_path)
    results = [read_records(path, SFTExample) for path in paths]
    assert all(result == results[0] for result in results) and len(results[0]) == 2


def test_a_datasets_folder_gives_the_same_records_and_stage_output(tmp_path):
    from datasets import Dataset

    from stage1.sft_data.settings import SFTDataSettings
    from stage1.sft_data.stage import run_sft_data

    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "folder"))
    jsonl = _write_all_formats(tmp_path)[0]
    assert read_records(tmp_path / "folder", SFTExample) == read_records(jsonl, SFTExample)
    settings = SFTDataSettings(heldout_fraction=0.0)
    from_folder = run_sft_data(settings, instructions_path=tmp_path / "folder", out_dir=tmp_path / "a")
    from_file = run_sft_data(settings, instructions_path=jsonl, out_dir=tmp_path / "b")
    assert from_folder["output_hashes"] == from_file["output_hashes"]


@pytest.mark.parametrize(
    "row, field, message",
    [
        ({"id": "x", "kind": "sarcasm", "completion": " a\nEND", "method": "r"}, "kind", "unknown value 'sarcasm'"),
        ({"id": "x", "kind": "off_topic", "completion": "   ", "method": "r"}, "completion", "is empty"),
        ({"instruction_id": "x", "kind": "off_topic", "completion": 3}, "completion", "expected str"),
    ],
)
def test_bad_negative_rows_name_file_line_and_field(tmp_path, row, field, message):
    path = tmp_path / "negatives.jsonl"
    row = {"instruction_id": "x", **{k: v for k, v in row.items() if k != "id"}}
    path.write_text(json.dumps({"instruction_id": "ok", "kind": "off_topic", "completion": " b\nEND", "method": "r"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as caught:
        read_records(path, NegativeRecord)
    assert (caught.value.line, caught.value.field) == (2, field) and message in str(caught.value)
    bad = BadRows()
    kept = read_records(path, NegativeRecord, on_bad_rows="skip", bad_rows=bad)
    assert len(kept) == 1 and bad.count == 1 and bad.first[0].startswith(f"{path}:2:")


def test_special_token_text_in_data_is_refused(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"id": "a", "instruction": "Say <|im_start|> now", "response": "ok"}) + "\n")
    with pytest.raises(InputError, match="rows.jsonl:1: field 'instruction': contains the special-token text"):
        read_records(path, SFTExample)


def _sft_row(id_: str) -> dict[str, str]:
    return {"id": id_, "instruction": f"Question {id_}?", "response": f"Answer {id_}."}


def test_a_duplicate_id_in_a_csv_names_the_file_lines_of_both_rows(tmp_path):
    """Rows a, b, c, b under a header: the second b is on line 5 and the first on line 3."""
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "instruction", "response"])
        writer.writeheader()
        writer.writerows(_sft_row(id_) for id_ in "abcb")
    with pytest.raises(InputError) as caught:
        check_unique_ids(read_records(path, SFTExample), path)
    assert (caught.value.line, caught.value.field) == (5, "id")
    assert str(caught.value).startswith(f"{path}:5: field 'id': duplicate id 'b' (first seen on line 3)")


def test_duplicate_id_lines_count_blank_lines_and_skipped_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps(_sft_row("a")), "", '{"id": "bad"}', json.dumps(_sft_row("b")), json.dumps(_sft_row("a"))]
    path.write_text("\n".join(lines) + "\n")
    records = read_records(path, SFTExample, on_bad_rows="skip", bad_rows=BadRows())
    assert records.lines == [1, 4, 5]
    with pytest.raises(InputError, match=r"rows.jsonl:5: field 'id': duplicate id 'a' \(first seen on line 1\)"):
        check_unique_ids(records, path)


def test_duplicate_ids_in_a_plain_list_are_named_by_position_not_as_lines():
    records = [SFTExample.from_dict(_sft_row(id_)) for id_ in "aba"]
    with pytest.raises(InputError, match=r"duplicate id 'a' in records 1 and 3") as caught:
        check_unique_ids(records, "rows.jsonl")
    assert caught.value.line is None


def test_files_without_a_negative_source_read_as_rule_made():
    from stage1.core.records import NegativeRecord, PreferencePair

    pair = PreferencePair.from_dict({"prompt": render_prompt("Q?"), "chosen": render_completion("Yes."), "rejected": " No\nEND",
                                     "instruction_id": "1", "category": "c", "negative_kind": "off_topic", "split": "train"})
    assert pair.negative_source == "rules"
    negative = NegativeRecord.from_dict({"instruction_id": "1", "kind": "off_topic", "completion": " No\nEND", "method": "m"})
    assert negative.negative_source == "rules" and negative.chosen is None
    assert NegativeRecord.from_dict(plain_fields(negative)) == negative


def test_policy_records_carry_a_policy_kind_and_are_refused_otherwise():
    from stage1.core.records import NegativeRecord, PreferencePair, RecordError, policy_kind

    kind = policy_kind(["stopped_with_end", "not_degenerate"])
    assert kind == "policy:stopped_with_end+not_degenerate"
    row = {"instruction_id": "1", "kind": kind, "completion": " blah blah", "method": "sample", "negative_source": "policy",
           "chosen": render_completion("Yes.")}
    negative = NegativeRecord.from_dict(row)
    assert negative.kind == kind and NegativeRecord.from_dict(plain_fields(negative)) == negative
    refused = [
        ({**row, "kind": "off_topic"}, "kind"),  # a rule kind on a policy negative
        ({**row, "negative_source": "rules", "chosen": None}, "kind"),  # a policy kind on a rule negative
        ({**row, "negative_source": "humans"}, "negative_source"),
        ({**row, "kind": "policy:"}, "kind"),
        ({key: value for key, value in row.items() if key != "negative_source"}, "chosen"),  # only policy may override chosen
    ]
    for bad, field in refused:
        with pytest.raises(RecordError) as error:
            NegativeRecord.from_dict(bad)
        assert error.value.field == field, bad
    pair = {"prompt": render_prompt("Q?"), "chosen": render_completion("Yes."), "rejected": " blah", "instruction_id": "1",
            "category": "c", "negative_kind": kind, "split": "eval", "negative_source": "policy"}
    assert PreferencePair.from_dict(pair).to_dict() == pair
    with pytest.raises(RecordError):
        PreferencePair.from_dict({**pair, "negative_source": "rules"})
    with pytest.raises(ValueError):
        policy_kind([])


SFT_ROW = {"id": "a", "instruction": "What is 2 plus 2?", "response": "4."}
NEGATIVE_ROW = {"instruction_id": "a", "kind": "off_topic", "completion": " Rome.\nEND", "method": "rule"}
POLICY_ROW = {**NEGATIVE_ROW, "kind": "policy:not_degenerate", "negative_source": "policy"}
SOURCES_HINT = "one of: rules, policy"


@pytest.mark.parametrize(("record", "row", "field", "message", "hint"), [
    (SFTExample, {**SFT_ROW, "id": None}, "id", "missing", None),
    (SFTExample, {**SFT_ROW, "id": " "}, "id", "is empty", None),
    (SFTExample, {**SFT_ROW, "id": True}, "id", "expected str or int, got a boolean", None),
    (SFTExample, {**SFT_ROW, "num_tokens": True}, "num_tokens", "expected int, got a boolean", None),
    (SFTExample, {**SFT_ROW, "response": False}, "response", "expected str, got a boolean", None),
    (SFTExample, {**SFT_ROW, "id": 1.5}, "id", "expected str or int, got float", None),
    (SFTExample, {**SFT_ROW, "category": " "}, "category", "is empty", None),
    (SFTExample, {**SFT_ROW, "colour": "red"}, "colour", "unknown field",
     "allowed fields: category, id, instruction, num_tokens, refusal_expected, response, source, stop_reason"),
    (SFTExample, {**SFT_ROW, "response": "Say <|endoftext|>"}, "response", "contains the special-token text '<|endoftext|>'",
     "remove control tokens from the data; the format never needs them"),
    (NegativeRecord, {**NEGATIVE_ROW, "completion": " <|im_end|>"}, "completion",
     "contains the special-token text '<|im_end|>'", "remove control tokens from the data; the format never needs them"),
    (NegativeRecord, {**NEGATIVE_ROW, "completion": " \n "}, "completion", "is empty", None),
    (NegativeRecord, {**NEGATIVE_ROW, "kind": "sarcasm"}, "kind", "unknown value 'sarcasm'",
     "one of: " + ", ".join(NEGATIVE_KINDS)),
    (NegativeRecord, {**NEGATIVE_ROW, "negative_source": "humans"}, "negative_source", "unknown value 'humans'", SOURCES_HINT),
    (NegativeRecord, {**NEGATIVE_ROW, "chosen": " Paris.\nEND"}, "chosen",
     "only a policy negative may carry its own chosen completion", None),
    (NegativeRecord, {**POLICY_ROW, "kind": "policy:Not-Degenerate"}, "kind", "'policy:Not-Degenerate' is not a policy kind",
     "policy:<criterion>[+<criterion>...], the criteria the sample failed"),
    (PreferencePair, {"prompt": "p", "chosen": " a\nEND", "rejected": " b\nEND", "instruction_id": "1", "category": "c",
                      "negative_kind": "off_topic", "split": "train", "negative_source": "humans"},
     "negative_source", "unknown value 'humans'", SOURCES_HINT),
    (PreferencePair, {"prompt": "p", "chosen": " a\nEND", "rejected": " A.\nEND", "instruction_id": "1", "category": "c",
                      "negative_kind": "off_topic", "split": "train"},
     "rejected", "equals chosen once case, spacing and punctuation are ignored", "drop the pair"),
])
def test_each_refusal_names_its_field_says_what_is_wrong_and_what_to_do(record, row, field, message, hint):
    with pytest.raises(RecordError) as caught:
        record.from_dict(row)
    assert (caught.value.field, caught.value.message, caught.value.hint) == (field, message, hint)
    assert str(caught.value) == f"field '{field}': {message}"


def test_a_text_of_100000_characters_is_the_longest_accepted():
    longest = "a" * 100_000
    assert SFTExample.from_dict({**SFT_ROW, "response": longest}).response == longest
    with pytest.raises(RecordError) as caught:
        SFTExample.from_dict({**SFT_ROW, "response": longest + "a"})
    assert (caught.value.field, caught.value.message, caught.value.hint) == (
        "response", "is 100,001 characters; the limit is 100,000", "split or shorten it",
    )


def test_a_row_that_leaves_out_the_labels_gets_their_defaults():
    assert InstructionRecord.from_dict({"id": 7, "instruction": "Hi?"}) == InstructionRecord("7", "Hi?", "general", False)
    example = SFTExample.from_dict(SFT_ROW)
    assert (example.category, example.source, example.stop_reason, example.num_tokens) == ("general", "file", None, None)
    negative = NegativeRecord.from_dict({key: value for key, value in NEGATIVE_ROW.items() if key != "method"})
    assert (negative.method, negative.negative_source, negative.source_instruction_id, negative.chosen) == ("rule", "rules", None, None)
    assert NegativeRecord.from_dict({**NEGATIVE_ROW, "method": "entity_swap"}).method == "entity_swap"
    assert InstructionRecord.from_dict({"id": " x ", "instruction": "Hi?", "category": " maths "}).category == "maths"


def test_a_policy_negative_keeps_its_own_chosen():
    negative = NegativeRecord.from_dict({**POLICY_ROW, "chosen": " Paris.\nEND"})
    assert negative.chosen == " Paris.\nEND" and negative.to_dict()["chosen"] == " Paris.\nEND"


def test_a_policy_kind_needs_a_criterion():
    from stage1.core.records import policy_kind

    assert policy_kind(iter(["no_runaway"])) == "policy:no_runaway"
    with pytest.raises(ValueError, match="^a policy negative must fail at least one criterion$"):
        policy_kind([])


def test_bad_rows_count_every_row_and_keep_the_first_ten_messages():
    bad = BadRows()
    for line in range(1, 13):
        bad.add(f"rows.jsonl:{line}: field 'id': missing")
    assert bad.count == 12 and len(bad.first) == 10 and bad.first[-1] == "rows.jsonl:10: field 'id': missing"
    report = bad.to_dict()
    assert report == {"count": 12, "first": bad.first} and report["first"] is not bad.first
    few = BadRows(keep=1)
    few.add("one")
    few.add("two")
    assert few.to_dict() == {"count": 2, "first": ["one"]}


def test_a_record_line_is_known_only_for_records_as_read():
    from stage1.core.records import RecordList, record_line

    read = RecordList(["r1", "r2"], lines=[3, 5])
    assert [record_line(read, index) for index in (0, 1)] == [3, 5]
    assert record_line(read, 2) is None and record_line(read, -1) is None
    assert record_line(["r1", "r2"], 0) is None  # a plain list has no lines
    assert record_line(RecordList(["r1", "r2"], lines=[3]), 0) is None  # lines that do not fit the records are not trusted


def test_a_duplicate_id_error_says_ids_must_be_unique():
    records = [SFTExample.from_dict(_sft_row(id_)) for id_ in "aa"]
    with pytest.raises(InputError) as caught:
        check_unique_ids(records, "rows.jsonl")
    assert caught.value.hint == "ids must be unique within a file"
    assert str(caught.value) == "rows.jsonl: field 'id': duplicate id 'a' in records 1 and 2 (ids must be unique within a file)"
