"""Atomic writes and strict, line-numbered readers."""

from __future__ import annotations

import errno
import json
import os

import pytest

from stage1.errors import InputError
from stage1.storage import atomic_write_jsonl, atomic_write_text, iter_rows, sha256_tree


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.jsonl"
    atomic_write_jsonl(target, [{"a": 1}])

    def broken_rows():
        yield {"a": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(target, broken_rows())
    assert target.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"], "no temp file left behind"


@pytest.mark.parametrize("errno_code", [errno.ENOSPC, errno.EROFS])
def test_full_disk_or_read_only_folder_keeps_the_old_file(tmp_path, monkeypatch, errno_code):
    """A write that fails (disk full, read-only) raises and leaves the earlier output and no temp file."""
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")

    def failing_fsync(fd):
        raise OSError(errno_code, os.strerror(errno_code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError) as caught:
        atomic_write_text(target, "new")
    assert caught.value.errno == errno_code
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


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


def test_tree_hash_sees_content_changes(tmp_path):
    (tmp_path / "a").write_text("1")
    before = sha256_tree(tmp_path)
    (tmp_path / "a").write_text("2")
    assert sha256_tree(tmp_path) != before
