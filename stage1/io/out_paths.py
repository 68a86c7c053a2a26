"""Where a command may write: output folders, the log file, paths from a config.

Every command that writes checks its output path here before it creates anything: not ``/``, not a
file or under one, not over an input (``check_out_dir``), and inside the run for paths a config gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from stage1.core.errors import ConfigError, InputError
from stage1.io.layout import CONFIG_FILE, LOCK_FILE, STAGE_DIRS, TIMINGS_FILE


def check_log_file(run_dir: Path, relative: str) -> Path:
    """The log file's path inside the run directory, never inside a stage's folder or over a run file.

    Raises:
        ConfigError: the path leaves the run directory, or a stage or the pipeline writes there.
    """
    resolved = inside_run_dir(run_dir, relative, "run.log_file")
    parts = resolved.relative_to(Path(run_dir).resolve()).parts
    taken = {Path(folder).parts[0] for folder in STAGE_DIRS.values()} | {CONFIG_FILE, TIMINGS_FILE, LOCK_FILE}
    if not parts or parts[0] in taken:
        raise ConfigError(
            f"log file {relative!r} would be written into {parts[0] if parts else 'the run directory itself'}, "
            "which the pipeline writes", field="run.log_file", hint="use a file of its own, e.g. run.log or logs/run.log",
        )
    return resolved


def check_writable_folder(path: Path, field: str, *, root_hint: str, file_hint: str) -> Path:
    """``path`` resolved, refused when it is ``/``, a file, or under a file (nothing is created).

    Raises:
        ConfigError: naming the path and what is wrong with it, with the hint given for that case.
    """
    resolved = Path(path).resolve()
    if resolved == resolved.parent:
        raise ConfigError(f"{path} is the root of the file system", field=field, hint=root_hint)
    for folder in (resolved, *resolved.parents):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder} is a file, not a folder", path=path, field=field, hint=file_hint)
    return resolved


def check_out_dir(out: Path, inputs: Iterable[Path], field: str = "--out") -> None:
    """Refuse an output folder that would overwrite the inputs or something that is not a folder.

    ``out`` may not be ``/`` or an existing file (or lie under one). It may not be or contain the
    folder holding an input file (the stage's files would replace it: ``sft-data --in
    instructions=D/train.jsonl --out D``), and may not be, contain or lie inside an input folder (a
    model, a run). A sibling folder of an input file (``D/out`` beside ``D/train.jsonl``) is allowed:
    nothing written there can replace the input.

    Raises:
        ConfigError: naming the input it would overwrite.
    """
    resolved = check_writable_folder(out, field, root_hint="give a folder of its own", file_hint="give a folder to write into")
    for path in inputs:
        try:
            source = Path(path).resolve()
        except RuntimeError:  # Python 3.11's resolve() on a symlink loop; the readers name it as one
            raise InputError("is a symlink loop (too many levels of symbolic links)", path=path,
                             hint="point the link at a real file") from None
        folder = source if source.is_dir() else source.parent
        if resolved == folder or resolved in folder.parents or (source.is_dir() and folder in resolved.parents):
            raise ConfigError(
                f"{out} would overwrite the input {path} (it is, holds or lies inside that input's folder)",
                field=field, hint="write into a new folder outside the inputs' folders",
            )


def inside_run_dir(run_dir: Path, relative: str, field: str) -> Path:
    """Resolve an output path from a config; refuse absolute paths and ``..`` that escape the run directory.

    Raises:
        ConfigError: the path leaves the run directory.
    """
    candidate = Path(relative)
    root = Path(run_dir).resolve()
    resolved = (root / candidate).resolve()
    if candidate.is_absolute() or (resolved != root and root not in resolved.parents):
        raise ConfigError(f"output path {relative!r} escapes the run directory {run_dir}", field=field, hint="use a path inside the run directory")
    return resolved
