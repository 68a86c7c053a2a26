"""The run directory: one lock per run, stage fingerprints, the files each stage read and wrote,
and the up-to-date check.

A stage is up to date when its ``stage.json`` exists and three things still match what it recorded
there: its settings, the content of every file it read, and every file it wrote. Each file is
recorded with its size, modification time and sha256; a run trusts a file whose size and time
still match (the cheap check), and ``run --verify`` hashes every file again. The fingerprint a
stage is recorded (and its training checkpoints saved) under covers its settings and the content
hashes of what it read, never a path or a module name, so a run directory keeps working when it is
moved or the code is regrouped. ``stage.json`` is written after the stage's own manifest, so its
presence means the stage finished; an interrupted stage has none and runs again (training stages
resume from checkpoints saved under the same fingerprint).

Model weights are hashed like any file, once: right after the stage that wrote them (one read while
they are still in the page cache) or the first time a run reads a model it did not build; later runs
reuse that hash while the size and time match. Hashing 64 GB of 32B weights on every ``run`` would
take minutes; ``--verify`` does it on demand.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.core.errors import ConfigError, InputError, RunLockedError
from stage1.io.atomic import atomic_write_json
from stage1.io.hashing import sha256_file
from stage1.io.layout import CONFIG_FILE, LOCK_FILE, MANIFEST, SCRATCH_NAMES, STAGE_DIRS, STAGE_FILE, TIMINGS_FILE
from stage1.io.manifest import config_hash

#: ``stage.json`` format: 2 records the files read and written; 1 (no ``format`` key) only the fingerprint.
RECORD_FORMAT = 2


def _worker_rank(environ: Mapping[str, str]) -> bool:
    """A non-zero rank of a real multi-process launch (``WORLD_SIZE`` > 1): its rank 0 holds the lock.

    ``RANK`` alone proves nothing (it is left in many shells and job schedulers); anything that does
    not parse as a launch of several processes takes the lock like a single process.
    """
    try:
        return int(environ.get("WORLD_SIZE", "1")) > 1 and int(environ.get("RANK", "0")) != 0
    except ValueError:
        return False


class RunLock:
    """An exclusive ``flock`` on the run directory; the kernel drops it if the process dies (even SIGKILL)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if _worker_rank(os.environ):
            # Under `accelerate launch`/torchrun every process runs the same command; the main
            # process (rank 0) holds the lock for all of them.
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent}: run directory is in use by another stage1 process (pid {holder}); "
                "wait for it to finish or choose another --run-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
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


def file_identity(path: Path) -> str:
    """A content hash for a file, or for a folder the hash of its small files and the sizes of large ones.

    The identity ``stage.json`` format 1 fingerprinted external inputs by; kept to adopt such runs.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        return "missing"
    parts = []
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = str(file.relative_to(path))
        size = file.stat().st_size
        parts.append((relative, sha256_file(file) if size < (16 << 20) else f"size:{size}"))
    return config_hash(parts)


# ---------------------------------------------------------------- file records


@dataclass(frozen=True)
class FileState:
    """One file as a stage saw it: size and modification time (the cheap check) and sha256 (the content)."""

    size: int
    mtime_ns: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileState:
        return cls(int(data["size"]), int(data["mtime_ns"]), str(data["sha256"]))


#: name inside the file or folder ("" for the file itself) -> its state.
Snapshot = dict[str, FileState]
#: Left out of what a later stage reads from a stage folder: records of the run, not data.
NOT_READ = frozenset({STAGE_FILE, MANIFEST})


def _files_of(path: Path, skip: frozenset[str]) -> list[tuple[str, Path]]:
    """The regular files of a file or folder, by relative name; hidden names and ``skip`` left out
    (``os.walk`` prunes them, so a stage's checkpoints are never even listed)."""
    if path.is_file():
        return [("", path)]
    files = []
    for folder, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SCRATCH_NAMES)
        for name in sorted(names):
            file = Path(folder) / name
            if name.startswith(".") or name in skip or name in SCRATCH_NAMES or not file.is_file():
                continue
            files.append((file.relative_to(path).as_posix(), file))
    return files


class ContentHashes:
    """sha256 of files, each computed at most once per run, and trusted from a record while the
    file's size and modification time still match it (unless ``verify``).

    Args:
        verify: hash every file again, whatever its size and time say (``run --verify``).
    """

    def __init__(self, verify: bool = False):
        self.verify = verify
        # Several records can name one file: the stage that wrote it, and each stage that read it
        # (at the time it read it); any of them whose size and time match the file is trusted.
        self._known: dict[Path, list[FileState]] = {}
        self._hashed: set[Path] = set()

    def learn(self, path: Path, state: FileState) -> None:
        """A recorded state, trusted while the file's size and time match it."""
        path = Path(path).absolute()
        if path not in self._hashed:
            self._known.setdefault(path, []).append(state)

    def state(self, path: Path) -> FileState:
        path = Path(path).absolute()
        stat = path.stat()
        if not self.verify or path in self._hashed:
            for known in reversed(self._known.get(path, [])):
                if known.size == stat.st_size and known.mtime_ns == stat.st_mtime_ns:
                    return known
        state = FileState(stat.st_size, stat.st_mtime_ns, sha256_file(path))
        self._known[path] = [state]
        self._hashed.add(path)
        return state

    def snapshot(self, path: Path, skip: frozenset[str] = frozenset({STAGE_FILE})) -> Snapshot:
        """Every file of ``path`` (a file or a folder; a missing path has none)."""
        return {name: self.state(file) for name, file in _files_of(Path(path), skip)}


def content_hash(snapshot: Snapshot) -> str:
    """One hash of a snapshot's names and contents (sizes and times left out: a copy is the same content)."""
    return config_hash({name: state.sha256 for name, state in sorted(snapshot.items())}) if snapshot else "missing"


def describe_change(path: Path, recorded: Snapshot, current: Snapshot, *, new_files: bool) -> str | None:
    """The first difference between what was recorded and what is there now, naming the file."""
    for name in sorted(set(recorded) | (set(current) if new_files else set())):
        shown = Path(path) / name if name else Path(path)
        before, now = recorded.get(name), current.get(name)
        if now is None:
            return f"{shown} is missing"
        if before is None:
            return f"{shown} is new"
        if now.sha256 != before.sha256:
            size = f" ({before.size} -> {now.size} bytes)" if now.size != before.size else ""
            return f"{shown} changed{size}"
    return None


# ---------------------------------------------------------------- stage records


@dataclass(frozen=True)
class StageRecord:
    """What ``stage.json`` holds.

    Attributes:
        inputs: per input name, the files the stage read (None in a format-1 record).
        written: the files it wrote, relative to its folder (None in a format-1 record).
    """

    stage: str
    fingerprint: str
    outputs: tuple[str, ...]
    inputs: dict[str, Snapshot] | None = None
    written: Snapshot | None = None

    @property
    def has_file_hashes(self) -> bool:
        return self.inputs is not None and self.written is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"stage": self.stage, "fingerprint": self.fingerprint, "outputs": list(self.outputs)}
        if self.has_file_hashes:
            data["format"] = RECORD_FORMAT
            data["inputs"] = {name: _snapshot_dict(files) for name, files in sorted(self.inputs.items())}
            data["written"] = _snapshot_dict(self.written)
        return data


def _snapshot_dict(snapshot: Snapshot) -> dict[str, Any]:
    return {name: state.to_dict() for name, state in sorted(snapshot.items())}


def _snapshot_from(data: dict[str, Any]) -> Snapshot:
    return {str(name): FileState.from_dict(state) for name, state in data.items()}


def legacy_fingerprint(stage: str, settings: Any, upstream: dict[str, str], external: dict[str, Path]) -> str:
    """The fingerprint a format-1 ``stage.json`` holds: settings, upstream fingerprints, external files."""
    return config_hash(
        {
            "stage": stage,
            "settings": settings,
            "upstream": dict(sorted(upstream.items())),
            "external": {name: file_identity(path) for name, path in sorted(external.items())},
        }
    )


def fingerprint(stage: str, settings: Any, reads: dict[str, Snapshot]) -> str:
    """A stage's settings and the content of every file it reads (by input name): nothing else."""
    return config_hash(
        {
            "format": RECORD_FORMAT,
            "stage": stage,
            "settings": settings,
            "reads": {name: content_hash(files) for name, files in sorted(reads.items())},
        }
    )


def read_stage_record(out_dir: Path) -> StageRecord | None:
    path = Path(out_dir) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        record = StageRecord(data["stage"], data["fingerprint"], tuple(data["outputs"]))
        if data.get("format") == RECORD_FORMAT:
            inputs = {str(name): _snapshot_from(files) for name, files in data["inputs"].items()}
            record = StageRecord(record.stage, record.fingerprint, record.outputs, inputs, _snapshot_from(data["written"]))
        return record
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # an unreadable record means "not finished": the stage runs again


def learn_record(hashes: ContentHashes, record: StageRecord, out_dir: Path, input_paths: dict[str, Path]) -> None:
    """Let ``hashes`` trust what ``record`` says of the files at their current paths (a run directory
    that was moved or copied keeps its records: only names relative to their folders are stored)."""
    if not record.has_file_hashes:
        return
    for name, state in record.written.items():
        hashes.learn(Path(out_dir) / name if name else Path(out_dir), state)
    for input_name, files in record.inputs.items():
        if input_name in input_paths:
            for name, state in files.items():
                hashes.learn(input_paths[input_name] / name if name else input_paths[input_name], state)


def stale_reason(
    out_dir: Path, record: StageRecord | None, expected: str, reads: dict[str, Snapshot], input_paths: dict[str, Path],
    hashes: ContentHashes,
) -> str | None:
    """Why the stage in ``out_dir`` must run again, naming the file that changed; None when up to date.

    Checked in this order: the record, the stage's own outputs (edited, damaged or deleted outside
    the pipeline), the files it read, and last its settings.
    """
    if record is None:
        return "not run yet (or interrupted)"
    missing = [name for name in record.outputs if not (Path(out_dir) / name).exists()]
    if missing:
        return f"{Path(out_dir) / missing[0]} is missing"
    if not record.has_file_hashes:
        return "recorded without file hashes"
    written = describe_change(out_dir, record.written, hashes.snapshot(out_dir), new_files=False)
    if written:
        return f"output {written}"
    for name in sorted(set(record.inputs) | set(reads)):
        change = describe_change(input_paths.get(name, Path(name)), record.inputs.get(name, {}), reads.get(name, {}), new_files=True)
        if change:
            return f"input {change}"
    if record.fingerprint != expected:
        return "its settings changed"
    return None


def is_up_to_date(out_dir: Path, expected: str, reads: dict[str, Snapshot] | None = None, hashes: ContentHashes | None = None) -> bool:
    """Whether the stage in ``out_dir`` is up to date (``stale_reason`` is None)."""
    reads = reads or {}
    record = read_stage_record(out_dir)
    return stale_reason(out_dir, record, expected, reads, {}, hashes or ContentHashes()) is None


def mark_done(
    out_dir: Path, stage: str, fingerprint_value: str, outputs: tuple[str, ...], reads: dict[str, Snapshot] | None = None,
    hashes: ContentHashes | None = None,
) -> StageRecord:
    """Write ``stage.json``: the fingerprint, and the files read (as snapshot before the stage ran:
    a file changed while it ran then reads as changed next time) and written (hashed now)."""
    missing = [o for o in outputs if not (Path(out_dir) / o).exists()]
    if missing:
        raise RuntimeError(f"stage {stage} finished without writing {', '.join(missing)}")
    written = (hashes or ContentHashes()).snapshot(out_dir)
    record = StageRecord(stage, fingerprint_value, outputs, dict(reads or {}), written)
    atomic_write_json(Path(out_dir) / STAGE_FILE, record.to_dict())
    return record


def check_log_file(run_dir: Path, relative: str) -> Path:
    """The log file's path inside the run directory, never inside a stage's folder or over a run file.

    Raises:
        ConfigError: the path leaves the run directory, or a stage or the pipeline writes there.
    """
    resolved = inside_run_dir(run_dir, relative, "run.log_file")
    parts = resolved.relative_to(Path(run_dir).resolve()).parts
    taken = set(STAGE_DIRS.values()) | {CONFIG_FILE, TIMINGS_FILE, LOCK_FILE}
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
