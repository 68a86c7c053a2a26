"""Temporary files and folders: named so the stage that owns them removes them on its next start.

Every temporary a writer makes lies beside its target and is named ``.<target>.<random>.stage1-tmp``
(``stage1.io.atomic``: files; ``atomic_folder``: model folders). A kill (SIGKILL, a lost machine)
between creating one and renaming it into place leaves it behind; the pipeline removes every such
name in a stage's folder when the stage next starts (whether it then runs or is up to date), and in
the run directory itself when a command takes the run's lock, always under that lock. Names that
earlier versions used (``.<target>.<8 characters>.tmp``, Python's ``mkstemp``) are removed too.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

TEMP_SUFFIX = ".stage1-tmp"
_LEGACY_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def is_temp_name(name: str) -> bool:
    """A name only a stage1 writer gives (a temp file or folder, this version's or an earlier one's)."""
    return name.startswith(".") and (name.endswith(TEMP_SUFFIX) or bool(_LEGACY_TEMP.fullmatch(name)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temps(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Remove every temporary a killed writer left in ``folder`` (and below it); return what was removed.

    Call it only while holding the lock of the run ``folder`` is in: a live writer's temps look the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for current, dirs, names in os.walk(folder):
        for name in [*names, *dirs]:
            if is_temp_name(name):
                path = Path(current) / name
                _remove(path)
                removed.append(path)
        dirs[:] = [d for d in dirs if not is_temp_name(d)] if recursive else []
    return removed


def remove_stale_siblings(folder: Path) -> list[Path]:
    """Remove the temporary siblings a killed folder writer left beside ``folder`` (``.<name>.*.stage1-tmp``)."""
    folder = Path(folder)
    if not folder.parent.is_dir():
        return []
    removed = []
    for entry in folder.parent.iterdir():
        if entry.name.startswith(f".{folder.name}.") and is_temp_name(entry.name):
            _remove(entry)
            removed.append(entry)
    return removed
