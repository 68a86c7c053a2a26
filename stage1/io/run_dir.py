"""The run directory: one lock per run, stage fingerprints, and the up-to-date check.

A stage is up to date when its ``stage.json`` exists, its fingerprint (settings + upstream
fingerprints + hashes of external input files) matches, and every output it declared still exists.
``stage.json`` is written after the stage's own manifest, so its presence means the stage finished;
an interrupted stage has none and runs again (training stages resume from their checkpoints).

Directory inputs (models, adapters) are identified by their producing stage's fingerprint, not by
hashing their bytes: at 32B a merged model is 64 GB and hashing it on every run would take minutes.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.core.errors import ConfigError, RunLockedError
from stage1.io.atomic import atomic_write_json
from stage1.io.hashing import sha256_file
from stage1.io.layout import LOCK_FILE, STAGE_FILE
from stage1.io.manifest import config_hash


class RunLock:
    """An exclusive ``flock`` on the run directory; the kernel drops it if the process dies (even SIGKILL)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if int(os.environ.get("RANK", "0")) != 0:
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


def file_identity(path: Path) -> str:
    """A content hash for a file, or for a folder the hash of its small files and the sizes of large ones."""
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


@dataclass(frozen=True)
class StageRecord:
    """What ``stage.json`` holds."""

    stage: str
    fingerprint: str
    outputs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "fingerprint": self.fingerprint, "outputs": list(self.outputs)}


def fingerprint(stage: str, settings: Any, upstream: dict[str, str], external: dict[str, Path]) -> str:
    return config_hash(
        {
            "stage": stage,
            "settings": settings,
            "upstream": dict(sorted(upstream.items())),
            "external": {name: file_identity(path) for name, path in sorted(external.items())},
        }
    )


def read_stage_record(out_dir: Path) -> StageRecord | None:
    import json

    path = Path(out_dir) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return StageRecord(data["stage"], data["fingerprint"], tuple(data["outputs"]))
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable record means "not finished": the stage runs again


def is_up_to_date(out_dir: Path, expected_fingerprint: str) -> bool:
    record = read_stage_record(out_dir)
    if record is None or record.fingerprint != expected_fingerprint:
        return False
    return all((Path(out_dir) / output).exists() for output in record.outputs)


def mark_done(out_dir: Path, stage: str, fingerprint_value: str, outputs: tuple[str, ...]) -> None:
    missing = [o for o in outputs if not (Path(out_dir) / o).exists()]
    if missing:
        raise RuntimeError(f"stage {stage} finished without writing {', '.join(missing)}")
    atomic_write_json(Path(out_dir) / STAGE_FILE, StageRecord(stage, fingerprint_value, outputs).to_dict())


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
