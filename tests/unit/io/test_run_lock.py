"""The run lock is on the run directory itself: deleting its note lets no second writer in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stage1.core.errors import RunLockedError
from stage1.io.layout import LOCK_FILE
from stage1.io.run_lock import RunLock, lock_for_output


def test_deleting_the_lock_file_lets_no_second_writer_in(tmp_path):
    with RunLock(tmp_path):
        (tmp_path / LOCK_FILE).unlink()
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):  # named from /proc/locks, not the note
            with RunLock(tmp_path):
                pass
        (tmp_path / LOCK_FILE).write_text("")  # an empty note in its place changes nothing either
        with pytest.raises(RunLockedError, match="in use by another stage1 process"):
            with RunLock(tmp_path):
                pass


def test_the_holder_note_lives_only_while_the_lock_is_held(tmp_path):
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_FILE).exists()
    assert list(tmp_path.iterdir()) == []


def test_a_refused_lock_creates_and_changes_nothing(tmp_path):
    code = (
        "import sys, time; sys.path.insert(0, '.');"
        "from stage1.io.run_lock import RunLock;"
        f"lock = RunLock(__import__('pathlib').Path({str(tmp_path)!r})).__enter__();"
        "open(sys.argv[1], 'w').close(); print('locked', flush=True); time.sleep(60)"
    )
    marker = tmp_path.parent / f"{tmp_path.name}.marker"
    child = subprocess.Popen([sys.executable, "-c", code, str(marker)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        (tmp_path / LOCK_FILE).unlink()
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(RunLockedError, match=f"pid {child.pid}"):
            with RunLock(tmp_path):
                pass
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    finally:
        child.kill()
        child.wait()
    with RunLock(tmp_path):  # SIGKILL dropped it
        pass


def test_an_output_inside_a_run_takes_that_runs_lock(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    with RunLock(run):
        with pytest.raises(RunLockedError):
            with lock_for_output(run / "eval" / "scored"):
                pass
    with lock_for_output(tmp_path / "elsewhere"):  # outside any run: nothing to lock
        pass
    assert not (tmp_path / "elsewhere").exists()


def test_only_rank_zero_of_a_launch_cleans_up(monkeypatch):
    """A worker rank removing temporaries could remove rank 0's own, mid-write."""
    from stage1.io.run_lock import is_worker_rank

    for world, rank, worker in (("2", "1", True), ("2", "0", False), ("1", "1", False), ("²", "1", False)):
        monkeypatch.setenv("WORLD_SIZE", world)
        monkeypatch.setenv("RANK", rank)
        assert is_worker_rank() is worker
