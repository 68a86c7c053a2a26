"""Whole-or-nothing writes (stage1.io.atomic): the old file survives a failed write, modes follow the umask."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from stage1.io.atomic import atomic_write_files, atomic_write_jsonl, atomic_write_text, new_file_mode


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


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_0666_less_the_umask(tmp_path, umask):
    """mkstemp makes 0600 files; an output should have the mode any new file would."""
    old = os.umask(umask)
    try:
        written = [
            atomic_write_text(tmp_path / "a.txt", "x"),
            atomic_write_jsonl(tmp_path / "b.jsonl", [{"a": 1}]),
            *atomic_write_files({"c": (tmp_path / "c.jsonl", b"{}\n")}).values(),
        ]
    finally:
        os.umask(old)
    assert new_file_mode() == 0o666 & ~old
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_several_files_change_together_or_not_at_all(tmp_path, monkeypatch):
    """A write failing on the second file leaves the first file as it was, and no temp files."""
    first, second = tmp_path / "train.jsonl", tmp_path / "heldout.jsonl"
    atomic_write_files({"train": (first, b"old train\n"), "heldout": (second, b"old heldout\n")})
    real_fsync, calls = os.fsync, []

    def fsync_failing_on_the_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_failing_on_the_second_file)
    with pytest.raises(OSError):
        atomic_write_files({"train": (first, b"new train\n"), "heldout": (second, b"new heldout\n")})
    monkeypatch.undo()
    assert (first.read_bytes(), second.read_bytes()) == (b"old train\n", b"old heldout\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heldout.jsonl", "train.jsonl"]
