"""A journal of finished generation batches, so a long generation resumes where it stopped.

At 32B the sft_data stage generates for hours. Each finished batch is appended to a JSON Lines
journal in the stage's output folder, flushed and fsynced before the next batch starts. A rerun
reads the journal, skips every batch whose rows are all there, and decodes the others with the same
batch plan and the same per-row seeds, so what it finally writes is byte-identical to what an
uninterrupted run writes. Rows are keyed by (instruction id, sample number), never by position.

Layout::

    {"journal": "stage1 generations", "version": 1, "fingerprint": "<sha256>"}      header
    {"key": ["<instruction id>", <sample>], "generation": {<Generation fields>}}    one per row
    {"commit": <rows in this batch>}                                                 after each batch

Only rows followed by a commit line count. What a kill or a crash can leave, and what happens:

- a torn last batch (no commit line, a last line without its newline, even bytes that are not
  JSON): ignored, and cut off before the next batch is appended;
- a journal whose fingerprint differs (another model, other prompts or decoding settings): nothing
  is reused; it is moved aside to ``STALE_NAME`` and a new journal starts;
- a complete, committed line that is not a valid row: ``InputError`` naming the line; the file was
  edited or damaged, and deleting it starts the generation over.

The fingerprint covers the prompts, keys and seeds, the decoding settings, the backend and the
model's identity (``model_identity``), so a journal is reused only for exactly the same work.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from stage1.core import progress
from stage1.core.errors import InputError
from stage1.core.generation import Generation, GenerationSettings
from stage1.io.atomic import jsonl_line
from stage1.io.hashing import sha256_bytes, sha256_file
from stage1.io.layout import JOURNAL_NAME, STALE_NAME  # noqa: F401  (JOURNAL_NAME is imported from here)
from stage1.io.manifest import config_hash

log = logging.getLogger(__name__)

JOURNAL_KIND = "stage1 generations"
JOURNAL_VERSION = 1
SAMPLE_BYTES = 1 << 20  # bytes read at each of three places of a weights file for its identity

Key = tuple[str, int]


# ---------------------------------------------------------------- pure parts


def journal_fingerprint(
    keys: Sequence[Key], prompts: Sequence[str], seeds: Sequence[int], settings: GenerationSettings, context: dict[str, Any]
) -> str:
    """One hash of everything a journalled row depends on; ``context`` holds backend and model identity."""
    work = sha256_bytes(json.dumps([[list(k), p, s] for k, p, s in zip(keys, prompts, seeds, strict=True)]).encode("utf-8"))
    return config_hash({"work": work, "decoding": asdict(settings), "context": context})


def header_line(fingerprint: str) -> str:
    return jsonl_line({"journal": JOURNAL_KIND, "version": JOURNAL_VERSION, "fingerprint": fingerprint})


def batch_lines(rows: Sequence[tuple[Key, Generation]]) -> str:
    """The text appended for one finished batch: its rows, then the commit line."""
    body = "".join(jsonl_line({"key": [key[0], key[1]], "generation": asdict(generation)}) for key, generation in rows)
    return body + jsonl_line({"commit": len(rows)})


_GENERATION_TYPES = {f.name: f.type for f in fields(Generation)}
_TYPE_CHECKS = {"str": str, "bool": bool, "int": int}


def _generation_from_dict(data: Any, path: Path, line: int) -> Generation:
    if not isinstance(data, dict) or set(data) != set(_GENERATION_TYPES):
        raise InputError("not a generation record", path=path, line=line, field="generation", hint=_DELETE_HINT)
    for name, type_name in _GENERATION_TYPES.items():
        expected = _TYPE_CHECKS[str(type_name)]
        value = data[name]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise InputError(f"expected {type_name}", path=path, line=line, field=f"generation.{name}", hint=_DELETE_HINT)
    return Generation(**data)


def _key_from_row(row: dict[str, Any], path: Path, line: int) -> Key:
    key = row.get("key")
    if not (isinstance(key, list) and len(key) == 2 and isinstance(key[0], str) and isinstance(key[1], int) and not isinstance(key[1], bool)):
        raise InputError("expected [instruction id, sample number]", path=path, line=line, field="key", hint=_DELETE_HINT)
    return key[0], key[1]


_DELETE_HINT = "the journal was edited or damaged; delete it to generate again from the start"


@dataclass
class JournalContents:
    """What a journal file holds: committed rows and how many bytes of the file are committed."""

    status: str  # "missing", "stale" (another fingerprint or an unreadable header), "resumed"
    done: dict[Key, Generation]
    committed_bytes: int = 0
    discarded_rows: int = 0  # rows of a torn, uncommitted last batch


def parse_journal(data: bytes, fingerprint: str, path: Path) -> JournalContents:
    """Read journal bytes (see the module docstring for what counts).

    Raises:
        InputError: a committed line that is not a valid row (file and line named).
    """
    lines = data.split(b"\n")[:-1]  # the piece after the last newline is a torn write: never counted
    if not lines:
        return JournalContents("missing", {})  # no file, or killed while writing the header
    header = _header(lines[0])
    if header is None or header.get("journal") != JOURNAL_KIND or header.get("fingerprint") != fingerprint:
        return JournalContents("stale", {})
    done: dict[Key, Generation] = {}
    pending: dict[Key, Generation] = {}
    offset = committed = len(lines[0]) + 1
    for number, raw in enumerate(lines[1:], start=2):
        offset += len(raw) + 1
        row = _json_or_none(raw)
        if row is None:
            return _torn_tail(done, pending, committed, path, number, lines)
        if isinstance(row, dict) and "commit" in row:
            if row["commit"] != len(pending):
                raise InputError("commit count does not match the rows before it", path=path, line=number, hint=_DELETE_HINT)
            done.update(pending)
            pending, committed = {}, offset
            continue
        if not isinstance(row, dict):
            raise InputError("expected a JSON object", path=path, line=number, hint=_DELETE_HINT)
        key = _key_from_row(row, path, number)
        pending[key] = _generation_from_dict(row.get("generation"), path, number)
    return JournalContents("resumed", done, committed, len(pending))


def _header(raw: bytes) -> dict[str, Any] | None:
    value = _json_or_none(raw)
    return value if isinstance(value, dict) else None


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _torn_tail(done, pending, committed: int, path: Path, number: int, lines: list[bytes]) -> JournalContents:
    """A line that is not JSON: acceptable only in the last, uncommitted batch (a torn write)."""
    later = [_json_or_none(raw) for raw in lines[number:]]
    if any(isinstance(row, dict) and "commit" in row for row in later):
        raise InputError("not valid JSON inside a committed batch", path=path, line=number, hint=_DELETE_HINT)
    return JournalContents("resumed", done, committed, len(pending) + 1 + len(later))


# ---------------------------------------------------------------- the file


class GenerationJournal:
    """An open journal: the committed rows so far, and ``append`` for each finished batch."""

    def __init__(self, path: Path, contents: JournalContents, handle):
        self.path = path
        self.contents = contents
        self._handle = handle

    @property
    def done(self) -> dict[Key, Generation]:
        return self.contents.done

    @classmethod
    def open(cls, path: str | Path, fingerprint: str) -> GenerationJournal:
        """Open (or start) the journal at ``path`` for work with this fingerprint.

        Raises:
            InputError: a damaged committed line (see ``parse_journal``).
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        contents = parse_journal(target.read_bytes() if target.is_file() else b"", fingerprint, target)
        if contents.status == "stale":
            log.warning("%s: written for other work (model, prompts or decoding changed); moved to %s", target, STALE_NAME)
            os.replace(target, target.with_name(STALE_NAME))
        if contents.status == "resumed":
            handle = open(target, "r+b")  # noqa: SIM115 - closed by close()
            handle.truncate(contents.committed_bytes)
            handle.seek(contents.committed_bytes)
            if contents.done or contents.discarded_rows:
                log.info("%s: resuming with %d generated rows (%d rows of a torn batch discarded)",
                         target, len(contents.done), contents.discarded_rows)
        else:
            handle = open(target, "wb")  # noqa: SIM115 - closed by close()
            handle.write(header_line(fingerprint).encode("utf-8"))
        journal = cls(target, contents, handle)
        journal._sync()
        return journal

    def append(self, rows: Sequence[tuple[Key, Generation]]) -> None:
        """Write one finished batch and its commit line, then fsync: after this it survives a kill."""
        self._handle.write(batch_lines(rows).encode("utf-8"))
        self._sync()
        self.contents.done.update(rows)

    def _sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def remove(self) -> None:
        """Delete the journal once the stage's outputs and manifest are written."""
        self.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> GenerationJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def generate_with_journal(
    journal: GenerationJournal,
    plan: Sequence[Sequence[int]],
    keys: Sequence[Key],
    prompts: Sequence[str],
    seeds: Sequence[int],
    settings: GenerationSettings,
    make_backend: Callable[[], Any],
) -> tuple[list[Generation], dict[str, int]]:
    """Decode every batch of ``plan`` not yet in the journal, appending each as it finishes.

    ``make_backend`` is called at most once, and only when some batch is missing, so a rerun after
    the last batch was journalled loads no model. A batch is skipped only when all its rows are in
    the journal; otherwise it is decoded whole, as the uninterrupted run decoded it, and only its
    missing rows are appended.

    Returns:
        The generations in prompt order, and counts: ``reused`` rows, ``generated`` rows,
        ``batches`` decoded now.
    """
    backend = None
    reused = sum(1 for key in keys if key in journal.done)
    generated = batches = 0
    for batch in plan:
        if not all(keys[i] in journal.done for i in batch):
            backend = backend or make_backend()
            outputs = backend.generate_batch([prompts[i] for i in batch], settings, [seeds[i] for i in batch])
            new_rows = [(keys[i], g) for i, g in zip(batch, outputs, strict=True) if keys[i] not in journal.done]
            journal.append(new_rows)
            generated += len(new_rows)
            batches += 1
        progress.report("generating", len(batch), len(prompts))
    return [journal.done[key] for key in keys], {"reused": reused, "generated": generated, "batches": batches}


# ---------------------------------------------------------------- model identity (reads files)


def model_identity(model_dir: str | Path) -> dict[str, Any]:
    """What identifies a model folder cheaply: config and tokenizer hashes, and per weights file its
    size plus the hash of three 1 MiB samples (start, middle, end). Two fine-tunes of one
    architecture have the same sizes but differ in every sample; hashing 64 GB whole would take minutes.
    """
    folder = Path(model_dir)
    identity: dict[str, Any] = {}
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        path = folder / name
        identity[name] = sha256_file(path) if path.is_file() else None
    identity["weights"] = {path.name: _sampled_hash(path) for path in sorted(folder.glob("*.safetensors"))}
    return identity


def _sampled_hash(path: Path) -> str:
    size = path.stat().st_size
    pieces = [str(size).encode()]
    with open(path, "rb") as handle:
        for offset in sorted({0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)}):
            handle.seek(offset)
            pieces.append(handle.read(SAMPLE_BYTES))
    return sha256_bytes(b"".join(pieces))
