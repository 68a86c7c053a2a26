"""Whole-or-nothing writes: every output appears complete or not at all.

Every output is written to a temporary file in the same folder, flushed, fsynced and renamed over
the target, so a crash leaves either the old file or the new one, never half of one; a reader in a
later stage therefore never sees a partial file. New files get the usual ``0666 & ~umask`` mode
(``mkstemp`` alone would make every output 0600). ``atomic_write_files`` writes several files
together: all or none of them change when a write fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from stage1.io.temps import TEMP_SUFFIX


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file: ``0o666`` less the process umask."""
    try:  # Linux >= 4.7 reports the umask without changing it (os.umask would, for every thread)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def give_new_file_mode(folder: str | Path) -> None:
    """Give every file under ``folder`` the mode of a new file (``new_file_mode``).

    safetensors writes its files 0600 whatever the umask; every other output stage1 writes is
    ``0o666 & ~umask``, and a model folder that only its writer can read cannot be shared.
    """
    mode = new_file_mode()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def _temp_beside(target: Path) -> tuple[int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Named so the stage that owns the folder removes it on its next start if a kill leaves it (stage1.io.temps).
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        os.chmod(tmp_name, new_file_mode())  # mkstemp makes 0600; outputs are ordinary files
    except BaseException:
        os.close(fd)
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return fd, tmp_name


def _write_temp(target: Path, write: Callable[[BinaryIO], object]) -> str:
    """A fsynced temp file beside ``target`` filled by ``write(handle)``; the temp's name (removed on failure)."""
    fd, tmp_name = _temp_beside(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return tmp_name


def _rename_into_place(tmp_name: str, target: Path) -> Path:
    """Rename a finished temp over ``target`` (the temp is removed if that fails), then fsync the folder."""
    try:
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    target = Path(path)
    return _rename_into_place(_write_temp(target, lambda handle: handle.write(data)), target)


def atomic_write_files(files: dict[str, tuple[str | Path, bytes]]) -> dict[str, Path]:
    """Write several files so that a failed write changes none of them; return ``{name: path}``.

    Every file is first written to its own fsynced temp file; only when all of them are on disk are
    they renamed over their targets. A failure while writing (disk full, quota, permissions) removes
    the temps and leaves every target as it was. The renames themselves are not one transaction,
    but a rename within a folder needs no space and fails only if the folder itself breaks.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for target, data in ((Path(path), data) for path, data in files.values()):
            staged.append((_write_temp(target, lambda handle, data=data: handle.write(data)), target))
        for tmp_name, target in staged:
            os.replace(tmp_name, target)
    except BaseException:
        for tmp_name, _ in staged:
            Path(tmp_name).unlink(missing_ok=True)
        raise
    for folder in {target.parent for _, target in staged}:
        _fsync_dir(folder)
    return {name: Path(path) for name, (path, _) in files.items()}


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_chunks(path: str | Path, chunks: Iterable[str]) -> Path:
    """Write text given in pieces atomically, each encoded and written as it comes (not held whole)."""
    target = Path(path)

    def write(handle: BinaryIO) -> None:
        for chunk in chunks:
            handle.write(chunk.encode("utf-8"))

    return _rename_into_place(_write_temp(target, write), target)


def dumps_json(value: Any) -> str:
    """Stable JSON: sorted keys, UTF-8 kept as is, a trailing newline."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def atomic_write_json(path: str | Path, value: Any) -> Path:
    return atomic_write_text(path, dumps_json(value))


def jsonl_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"


def jsonl_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """Rows as JSON Lines, encoded; raises ``UnicodeEncodeError`` before anything is written."""
    return "".join(jsonl_line(row) for row in rows).encode("utf-8")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines atomically. Rows are streamed into the temp file, not held in memory."""
    target = Path(path)

    def write(handle: BinaryIO) -> None:
        for row in rows:
            handle.write(jsonl_line(row).encode("utf-8"))

    return _rename_into_place(_write_temp(target, write), target)
