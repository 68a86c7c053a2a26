"""Plain reads of files stage1 or a library wrote (stage1.io.plain): json.loads and open behaviour, no InputError."""

from __future__ import annotations

import json

import pytest

from stage1.io.plain import read_byte_range, read_json, text_lines


def test_read_json_parses_utf8_and_raises_what_json_and_open_raise(tmp_path):
    good = tmp_path / "config.json"
    good.write_bytes(json.dumps({"model_type": "qwen2", "name": "é"}, ensure_ascii=False).encode("utf-8"))
    assert read_json(good) == {"model_type": "qwen2", "name": "é"}
    assert read_json(str(good))["model_type"] == "qwen2"
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        read_json(tmp_path / "bad.json")
    (tmp_path / "latin.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(UnicodeDecodeError):
        read_json(tmp_path / "latin.json")


def test_text_lines_streams_the_lines_with_their_newlines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}', encoding="utf-8")
    assert list(text_lines(path)) == ['{"a": 1}\n', "\n", '{"a": 2}']
    with pytest.raises(FileNotFoundError):
        list(text_lines(tmp_path / "missing.jsonl"))


def test_read_byte_range_reads_from_an_offset_and_stops_at_the_end(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(10)))
    assert read_byte_range(path, 0, 4) == bytes([0, 1, 2, 3])
    assert read_byte_range(path, 8, 4) == bytes([8, 9])
    assert read_byte_range(path, 12, 4) == b""
