"""Model folders written whole or not at all, and a full disk reported as one line.

A model folder (the tiny base model, the merged SFT model, an adapter) is written by libraries
(``save_pretrained``) that write file after file in place: a full disk or a kill in between left a
half-written ``merged/`` that looked like a model. ``atomic_folder`` hands the writer a temporary
sibling (named so the owning stage removes it on its next start, ``stage1.io.temps``), and only
when everything is written and fsynced swaps it into place with two renames. ``ENOSPC`` and
``EDQUOT`` raised anywhere inside, including safetensors' own ``SafetensorError`` (not an
``OSError``), become a ``DiskFullError`` naming the folder, the space the write needed and the
space left; the temporary is removed, and nothing half-written is ever in place. (A writer may
clear its old outputs first to free their space, as merge does: a 32B merge would otherwise need
twice 61 GiB; the folder then holds no model and its stage reruns.)
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from stage1.core.errors import DiskFullError
from stage1.io.atomic import _fsync_dir, give_new_file_mode, new_file_mode
from stage1.io.temps import TEMP_SUFFIX

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: What a model folder's writer replaces; anything else in an ``--out`` folder (a user's notes) is kept.
MODEL_FOLDER_FILES = ("*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json", "tokenizer*",
                      "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                      "README.md", "adapter_config.json", "lineage.json", "fidelity.json", "manifest.json", "stage.json")
# How Rust's std::io (safetensors, tokenizers) spells ENOSPC / EDQUOT inside its own exceptions.
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "StorageFull", "FilesystemQuotaExceeded",
                   f"os error {errno.ENOSPC})", f"os error {errno.EDQUOT})")


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (an ``OSError``, or a library's wrapper of one) means no space or no quota left."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return any(text in str(error) for text in _DISK_FULL_TEXT)


def free_bytes(path: Path) -> int | None:
    """Bytes free to this user on the file system holding ``path`` (its nearest existing folder)."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _mib(value: int) -> str:
    return f"{value / 2**20:,.1f} MiB"


def disk_full_error(path: Path, *, needed: int | None, written: int = 0) -> DiskFullError:
    """The one-line error for a write to ``path`` that ran out of space."""
    free = free_bytes(path)
    need = f"needs about {_mib(needed)}" if needed else f"ran out after {_mib(written)}"
    left = f", {_mib(free)} free there" if free is not None else ""
    return DiskFullError(
        f"{path}: no space left on the device ({need}{left}); nothing half-written was left in place: "
        "free space (or quota) or choose another --run-dir / --out, and rerun"
    )


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def _fsync_tree(folder: Path) -> None:
    for current, _, names in os.walk(folder):
        for name in names:
            fd = os.open(Path(current) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(current))


def _swap_into_place(staged: Path, target: Path, drop: tuple[str, ...]) -> None:
    """Rename ``staged`` over ``target``. Entries of the old ``target`` the new folder does not hold and
    ``drop`` does not name (a user's own files in an ``--out`` folder) are carried over first."""
    if target.exists():
        for entry in target.iterdir():
            if not (staged / entry.name).exists() and not any(fnmatch.fnmatch(entry.name, p) for p in drop):
                os.rename(entry, staged / entry.name)
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=TEMP_SUFFIX, dir=target.parent))
        os.rename(target, old / target.name)
        os.rename(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staged, target)
    _fsync_dir(target.parent)


@contextmanager
def atomic_folder(target: str | Path, *, needed_bytes: int | None = None, drop: Iterable[str] = ("*",)) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target`` to write a whole folder into; on success it
    replaces ``target`` (file modes as any new file's), on any failure it is removed.

    Args:
        needed_bytes: what the folder will take, for the message when the disk fills up.
        drop: names in the old ``target`` not carried into the new one (default: everything).

    Raises:
        DiskFullError: the writer, or the fsync, ran out of space or quota (exit 2).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent))
    try:
        try:
            yield staged
            give_new_file_mode(staged)
            os.chmod(staged, new_file_mode() | (new_file_mode() & 0o444) >> 2)  # mkdtemp makes 0700; a folder is searchable where readable
            _fsync_tree(staged)
        except Exception as error:
            if is_disk_full(error):
                raise disk_full_error(target, needed=needed_bytes, written=tree_bytes(staged)) from None
            raise
        _swap_into_place(staged, target, tuple(drop))
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)

