"""Files in and out: atomic writes, strict line-numbered readers, hashes and manifests.

Every output is written to a temporary file in the same folder, flushed, fsynced and renamed over
the target, so a crash leaves either the old file or the new one, never half of one; a reader in a
later stage therefore never sees a partial file. Readers refuse bad input with the file, line and
field, before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stage1.errors import InputError

UTF8_BOM = b"\xef\xbb\xbf"


# ---------------------------------------------------------------- writing


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


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


def dumps_json(value: Any) -> str:
    """Stable JSON: sorted keys, UTF-8 kept as is, a trailing newline."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def atomic_write_json(path: str | Path, value: Any) -> Path:
    return atomic_write_text(path, dumps_json(value))


def jsonl_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines atomically. Rows are streamed into the temp file, not held in memory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            for row in rows:
                handle.write(jsonl_line(row))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


# ---------------------------------------------------------------- hashing


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | Path, pattern: str = "*") -> str:
    """One hash over a folder's files (names and contents), stable across machines."""
    root = Path(path)
    if root.is_file():
        return sha256_file(root)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob(pattern) if p.is_file() and not p.name.startswith(".")):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- reading


def _read_utf8(path: Path) -> str:
    if not path.exists():
        raise InputError("file not found", path=path, hint="check the path")
    if path.is_dir():
        raise InputError("is a folder, expected a file", path=path)
    data = path.read_bytes()
    if data.startswith(UTF8_BOM):
        raise InputError(
            "the file starts with a UTF-8 byte-order mark", path=path, line=1, hint="save it as UTF-8 without BOM"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(
            f"invalid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})",
            path=path,
            line=line,
            hint="re-encode the file as UTF-8",
        ) from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file.

    Raises:
        InputError: missing file, BOM, invalid UTF-8, malformed JSON, a line that is not an object.
    """
    source = Path(path)
    text = _read_utf8(source)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            hint = "each line must be one complete JSON object"
            if number == 1 and line.lstrip().startswith("["):
                hint = "this looks like a JSON array; name the file .json or write one object per line"
            raise InputError(f"malformed JSON ({error.msg} at column {error.colno})", path=source, line=number, hint=hint) from None
        if not isinstance(value, dict):
            hint = "write one JSON object per line"
            if isinstance(value, list):
                hint = "this line is a JSON array; name the file .json for an array, or write one object per line"
            raise InputError(f"expected a JSON object, found {type(value).__name__}", path=source, line=number, hint=hint)
        yield number, value


def iter_json_array(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(item_number, object)`` from a file holding one JSON array of objects (items from 1)."""
    source = Path(path)
    try:
        value = json.loads(_read_utf8(source))
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg})", path=source, line=error.lineno) from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise InputError("expected a JSON array of objects", path=source, hint="or use JSON Lines (.jsonl)")
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise InputError(f"item {number} is {type(item).__name__}, expected an object", path=source, line=number)
        yield number, item


def iter_csv(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` from a CSV file with a header; empty cells become missing fields."""
    source = Path(path)
    reader = csv.DictReader(io.StringIO(_read_utf8(source), newline=""))
    for row in reader:
        if None in row:
            raise InputError("more cells than header columns", path=source, line=reader.line_num)
        yield reader.line_num, {key: value for key, value in row.items() if value not in (None, "")}


def iter_dataset_folder(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, row)`` from a folder written by ``datasets.Dataset.save_to_disk``."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(path))
    if hasattr(dataset, "keys"):  # a DatasetDict: take its train split, or its only split
        splits = list(dataset.keys())
        dataset = dataset["train"] if "train" in splits else dataset[splits[0]]
    for number, row in enumerate(dataset, start=1):
        yield number, dict(row)


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows from a JSONL, JSON, CSV file or a local ``datasets`` folder, with their line/item numbers."""
    source = Path(path)
    if source.is_dir():
        return iter_dataset_folder(source)
    suffix = source.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return iter_jsonl(source)
    if suffix == ".json":
        return iter_json_array(source)
    if suffix == ".csv":
        return iter_csv(source)
    if not source.exists():
        raise InputError("file not found", path=source)
    raise InputError(f"unknown file type {suffix!r}", path=source, hint="use .jsonl, .json, .csv or a datasets folder")
