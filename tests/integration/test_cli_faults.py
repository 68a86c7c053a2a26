"""Faults seen through the CLI: a full disk or quota, a read-only or unwritable run directory, a
second run on a locked directory. Each gives a clear message and an exit code, and earlier outputs
stay as they were."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from stage1 import cli
from stage1.io.run_dir import RunLock

ROOT = Path(__file__).resolve().parents[2]
SFT = ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EROFS, "Read-only file system"),
        (errno.EPERM, "Operation not permitted"),  # an immutable folder (chattr +i) or some network file systems
        (errno.EACCES, "Permission denied"),
        (errno.EDQUOT, "Disk quota exceeded"),
    ],
)
def test_write_failure_is_reported_and_earlier_output_kept(tmp_path, monkeypatch, capsys, code, words):
    out = tmp_path / "negatives"
    assert cli.main(["negatives", "--in", f"sft={SFT}", "--out", str(out)]) == 0
    before = (out / "negatives.jsonl").read_bytes()

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    status = cli.main(["negatives", "--in", f"sft={SFT}", "--out", str(out), "--set", "negatives.per_example=3"])
    err = capsys.readouterr().err
    assert status == 2
    assert words in err and "earlier outputs are intact" in err and "Traceback" not in err
    monkeypatch.undo()
    assert (out / "negatives.jsonl").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_second_run_on_a_locked_directory_refuses(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        status = cli.main(["negatives", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert status == 2
    assert "in use by another stage1 process" in err and f"pid {os.getpid()}" in err
    assert not (run_dir / "negatives").exists()
