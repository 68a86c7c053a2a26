"""Strict readers (stage1.io.readers): every bad row named by file, line and field."""

from __future__ import annotations

import json

import pytest

from stage1.core.errors import InputError
from stage1.io.readers import iter_rows


@pytest.mark.parametrize(
    "content, line, message",
    [
        (b'{"a": 1}\n{"a": \n', 2, "malformed JSON"),
        (b'{"a": 1}\n\xff\xfe\n', 2, "invalid UTF-8"),
        (b'\xef\xbb\xbf{"a": 1}\n', 1, "byte-order mark"),
        (b'[{"a": 1}]\n', 1, "JSON array"),
        (b'{"a": 1}\n"just a string"\n', 2, "expected a JSON object"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, content, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        list(iter_rows(path))
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(iter_rows(path)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_json_array_and_csv_and_dataset_folder(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"x": "1"}, {"x": "2"}]))
    assert [row for _, row in iter_rows(tmp_path / "a.json")] == [{"x": "1"}, {"x": "2"}]
    (tmp_path / "a.csv").write_text("id,instruction\n1,Hello\n2,\"multi\nline\"\n")
    rows = list(iter_rows(tmp_path / "a.csv"))
    assert rows[1][1] == {"id": "2", "instruction": "multi\nline"}
    from datasets import Dataset

    Dataset.from_list([{"id": "a", "instruction": "b"}]).save_to_disk(str(tmp_path / "ds"))
    assert [row for _, row in iter_rows(tmp_path / "ds")] == [{"id": "a", "instruction": "b"}]


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        list(iter_rows(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown file type"):
        list(iter_rows(tmp_path / "x.txt"))


@pytest.mark.parametrize(
    "name, content, line, field",
    [
        ("rows.jsonl", '{"id": "a", "instruction": "ok"}\n{"id": "b", "instruction": "a\\ud800b"}\n', 2, "instruction"),
        ("rows.jsonl", '{"id": "a", "meta": {"notes": ["fine", "\\udfff"]}}\n', 1, "meta"),
        ("rows.json", '[{"id": "a"}, {"id": "b", "response": "x\\uDC00"}]', 2, "response"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_line_and_field(tmp_path, name, content, line, field):
    """JSON decodes "\\ud800" to a str that UTF-8 cannot encode; it would crash the stage's writes."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        list(iter_rows(path))
    assert (caught.value.line, caught.value.field) == (line, field)
    assert "not encodable as UTF-8" in str(caught.value) and str(path) in str(caught.value)


def test_a_surrogate_pair_is_one_character_and_accepted(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a", "instruction": "smile \\ud83d\\ude00", "note": "\\\\ud800 is text here"}\n')
    assert list(iter_rows(path)) == [(1, {"id": "a", "instruction": "smile \U0001F600", "note": "\\ud800 is text here"})]


@pytest.mark.parametrize(
    "name, content, line, key",
    [
        ("rows.jsonl", '{"id": "a"}\n\n{"id": "b", "instruction": "x", "id": "c"}\n', 3, "id"),
        ("rows.jsonl", '{"id": "a", "meta": {"k": 1, "k": 2}}\n', 1, "k"),
        ("rows.json", '[\n  {"id": "a"},\n  {"id": "b",\n   "response": "x", "response": "y"}\n]\n', 3, "response"),
        ("rows.json", '{"data": [{"id": "a", "id": "b"}]}', 1, "id"),
    ],
)
def test_a_repeated_key_is_refused_naming_line_and_key(tmp_path, name, content, line, key):
    """json.loads keeps the last of two equal keys; a row that says two things is refused instead."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        list(iter_rows(path))
    assert (caught.value.line, caught.value.field) == (line, key)
    assert f"duplicate key {key!r}" in str(caught.value)


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,instruction,response,instruction\n1,a,b,c\n")
    with pytest.raises(InputError) as caught:
        list(iter_rows(path))
    assert str(caught.value).startswith(f"{path}:1: field 'instruction': the header repeats the column 'instruction'")


@pytest.mark.parametrize("content", [None, "rows.jsonl"])
def test_a_folder_that_is_not_a_saved_dataset_is_an_input_error(tmp_path, content):
    folder = tmp_path / "folder"
    folder.mkdir()
    if content:
        (folder / content).write_text('{"id": "a"}\n')
    with pytest.raises(InputError, match="not a saved datasets folder") as caught:
        list(iter_rows(folder))
    assert caught.value.path == str(folder) and ".jsonl" in str(caught.value)


@pytest.mark.parametrize(("cell", "expected"), [("true", True), ("FALSE", False), (" Yes ", True), ("no", False), ("1", True), ("0", False)])
def test_a_csv_reads_refusal_expected_as_a_boolean(tmp_path, cell, expected):
    from stage1.core.records import InstructionRecord
    from stage1.io.records import read_records

    path = tmp_path / "instructions.csv"
    path.write_text(f"id,instruction,refusal_expected\n1,How do I pick a lock?,{cell}\n2,What is 2+2?,\n")
    first, second = read_records(path, InstructionRecord)
    assert (first.refusal_expected, second.refusal_expected) == (expected, False)


def test_a_csv_boolean_cell_that_is_no_boolean_names_its_line_and_column(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("id,instruction,safe\n1,a,true\n2,b,maybe\n")
    with pytest.raises(InputError) as caught:
        list(iter_rows(path))
    assert (caught.value.line, caught.value.field) == (3, "safe")
    assert "expected a boolean, got 'maybe'" in str(caught.value) and "true, false" in str(caught.value)


def test_jsonl_is_read_a_line_at_a_time_with_the_offset_of_bad_utf8_in_the_whole_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    good = b'{"id": "1", "instruction": "a"}\n{"id": "2", "instruction": "b"}\r\n'
    path.write_bytes(good + b'{"id": "3", "instruction": "\xff"}\n')
    rows = iter_rows(path)
    assert next(rows) == (1, {"id": "1", "instruction": "a"}) and next(rows) == (2, {"id": "2", "instruction": "b"})
    with pytest.raises(InputError) as caught:
        next(rows)
    assert caught.value.line == 3 and f"at offset {len(good) + 28}" in str(caught.value)


def test_jsonl_is_read_line_by_line_with_the_same_offsets(tmp_path):
    """The reader streams (rows come before a later bad line is reached) and still names the bad
    byte's offset in the whole file, and a CRLF line end reads as before."""
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\r\n{"a": "\xc3\xa9"}\n{"a": \xff}\n')
    rows = iter_rows(path)
    assert next(rows) == (1, {"a": 1}) and next(rows) == (2, {"a": "é"})
    with pytest.raises(InputError, match=r"invalid UTF-8 \(byte 0xff at offset 28\)") as caught:
        next(rows)
    assert caught.value.line == 3
