"""The run directory's lock: one writer per run, whatever deletes which file.

The lock is an exclusive ``flock`` on the run directory itself (a file descriptor opened on the
folder), not on a file inside it: deleting ``.stage1.lock`` while a run holds the lock cannot let
a second writer in, since the folder's inode is what is locked. The kernel drops the lock when
the process dies, even by SIGKILL, so a killed run never blocks the next one.

``.stage1.lock`` is only a note of the holder's pid, written once the lock is held and removed when
it is released; the refusal names the holder from ``/proc/locks`` (by the folder's inode), and
from the note where ``/proc`` is not there. Nothing is created by a command that is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Mapping
from pathlib import Path

from stage1.core.env_numbers import parse_ascii_int
from stage1.core.errors import RunLockedError
from stage1.io.layout import CONFIG_FILE, LOCK_FILE, STAGE_FILE


def _worker_rank(environ: Mapping[str, str]) -> bool:
    """A non-zero rank of a real multi-process launch (``WORLD_SIZE`` > 1): its rank 0 holds the lock.

    ``RANK`` alone proves nothing (it is left in many shells and job schedulers); anything that does
    not parse as a launch of several processes (ASCII decimal only) takes the lock like a single process.
    """
    world = parse_ascii_int(environ.get("WORLD_SIZE", "1"))
    rank = parse_ascii_int(environ.get("RANK", "0"))
    return world is not None and rank is not None and world > 1 and rank != 0


def is_worker_rank() -> bool:
    """This process is a non-zero rank of a multi-process launch: it neither locks nor cleans up
    (rank 0 does both; a worker removing temporaries could remove rank 0's own)."""
    return _worker_rank(os.environ)


def lock_holder(folder: Path) -> str:
    """The pid holding an ``flock`` on ``folder`` (from ``/proc/locks``, by inode), else the note's, else "unknown"."""
    try:
        stat = os.stat(folder)
        device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                if "FLOCK" in fields and device in fields:
                    return fields[fields.index(device) - 1]
    except OSError:
        pass
    try:
        return (Path(folder) / LOCK_FILE).read_text(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


class RunLock:
    """An exclusive ``flock`` on the run directory; the kernel drops it if the process dies (even SIGKILL)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE  # the holder's note
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if _worker_rank(os.environ):
            # Under `accelerate launch`/torchrun every process runs the same command; the main
            # process (rank 0) holds the lock for all of them.
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{self.run_dir}: run directory is in use by another stage1 process (pid {lock_holder(self.run_dir)}); "
                "wait for it to finish or choose another --run-dir"
            ) from None
        self._fd = fd
        try:
            self.path.write_text(f"{os.getpid()}\n")
        except OSError:
            pass  # the note only helps name the holder; the lock is held either way
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def run_dir_holding(path: Path) -> Path | None:
    """The run directory ``path`` is (or lies inside), or None.

    A run directory is a folder holding ``.stage1.lock`` or ``config.yaml``, or the parent of a
    stage folder (one holding ``stage.json``); the nearest such folder above ``path`` wins.
    """
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if (folder / LOCK_FILE).exists() or (folder / CONFIG_FILE).is_file():
            return folder
        if (folder / STAGE_FILE).is_file() and folder != folder.parent:
            return folder.parent
    return None


def lock_for_output(out_dir: Path):
    """The lock of the run directory ``out_dir`` lies in, or a no-op outside any run: every writer
    of a run directory holds it."""
    holder = run_dir_holding(Path(out_dir))
    return RunLock(holder) if holder is not None else contextlib.nullcontext()
