"""The run directory: stage fingerprints, the files each stage read and wrote,
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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.io.atomic import atomic_write_json
from stage1.io.hashing import sha256_file
from stage1.io.layout import MANIFEST, SCRATCH_NAMES, STAGE_FILE
from stage1.io.manifest import config_hash

# Re-exported: the lock and the output-path checks lived here first.
from stage1.io.out_paths import check_log_file, check_out_dir, check_writable_folder, inside_run_dir  # noqa: F401
from stage1.io.run_lock import RunLock, run_dir_holding  # noqa: F401

#: ``stage.json`` format: 2 records the files read and written; 1 (no ``format`` key) only the fingerprint.
RECORD_FORMAT = 2


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
