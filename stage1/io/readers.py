"""Strict, line-numbered readers of JSONL, JSON, CSV and saved ``datasets`` folders.

Readers refuse bad input with the file, line and field, before anything is written: besides
malformed rows, a JSON object that repeats a key (``json`` would silently keep the last value), a
string holding a lone surrogate (``"\\ud800"`` decodes, but cannot be written back as UTF-8), a
CSV header that repeats a column, and a folder that is not a saved ``datasets`` folder.

They cannot hang or crash either: an input must be a regular file (a FIFO would block the read
forever, a device never ends), and the limits of the parsers underneath are turned into messages
instead of tracebacks: JSON nested deeper than ``MAX_JSON_DEPTH`` (the C decoder recurses and
raises RecursionError), integers longer than ``MAX_INT_DIGITS`` (Python refuses over 4,300 digits
with a bare ValueError), CSV fields over ``csv.field_size_limit()`` (131,072 characters).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stage1.core.errors import InputError
from stage1.io.csv_cells import typed_cells
from stage1.io.input_files import UTF8_BOM, read_input_bytes, utf8_lines

__all__ = ["UTF8_BOM", "iter_rows", "read_input_bytes"]

#: Deepest JSON nesting accepted. Records are flat; a config.json or results file nests a few levels.
MAX_JSON_DEPTH = 100
#: Longest JSON integer accepted, in digits (no count, id or size needs more; Python stops at 4,300).
MAX_INT_DIGITS = 100




def _read_utf8(path: Path) -> str:
    data = read_input_bytes(path)
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


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key
        self.line: int | None = None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a repeated key instead of keeping the last value."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


class _TooLongInteger(ValueError):
    def __init__(self, digits: int):
        super().__init__(digits)
        self.digits = digits


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _TooLongInteger(digits)
    return int(text)


class _TooDeep(ValueError):
    pass


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` levels (iterative: no recursion to overflow)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _loads(text: str) -> Any:
    """``json.loads`` refusing repeated keys, integers over ``MAX_INT_DIGITS`` and nesting over ``MAX_JSON_DEPTH``."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_bounded_int)
    except RecursionError:
        raise _TooDeep() from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth_exceeds(value, MAX_JSON_DEPTH):
        raise _TooDeep()
    return value


def _limit_error(error: ValueError, path: Path, line: int | None) -> InputError | None:
    """The message for a parser limit (too deep, too long an integer), or None for another error."""
    if isinstance(error, _TooDeep):
        return InputError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep", path=path, line=line,
                          hint="records are flat objects; this is not a file stage1 writes or reads")
    if isinstance(error, _TooLongInteger):
        return InputError(f"an integer of {error.digits:,} digits; the limit is {MAX_INT_DIGITS}", path=path, line=line,
                          hint="no count or id needs that many; quote it if it is text")
    return None


def read_json_file(path: str | Path) -> Any:
    """One JSON document from a regular file, read as strictly as the record readers read.

    Raises:
        InputError: as ``read_input_bytes``; invalid UTF-8 or JSON (with its line); a repeated key;
            nesting or an integer over the limits.
    """
    source = Path(path)
    text = _read_utf8(source)
    try:
        return _loads(text)
    except _DuplicateKey as error:
        raise _duplicate_key_error(source, _duplicate_key_line(text), error.key) from None
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg} at column {error.colno})", path=source, line=error.lineno) from None
    except ValueError as error:
        failure = _limit_error(error, source, None)
        if failure is None:
            raise
        raise failure from None


def _duplicate_key_line(text: str) -> int | None:
    """The line where the innermost object with a repeated key opens. Uses the pure-Python scanner,
    which knows positions; only called once a duplicate is known to be there."""
    from json.decoder import JSONObject
    from json.scanner import py_make_scanner

    def parse_object(s_and_end, *args, **kwargs):
        try:
            return JSONObject(s_and_end, *args, **kwargs)
        except _DuplicateKey as error:
            if error.line is None:
                error.line = s_and_end[0].count("\n", 0, s_and_end[1]) + 1
            raise

    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)
    decoder.parse_object = parse_object
    decoder.scan_once = py_make_scanner(decoder)
    try:
        decoder.decode(text)
    except _DuplicateKey as error:
        return error.line
    except ValueError:
        return None
    return None


def _duplicate_key_error(path: Path, line: int | None, key: str) -> InputError:
    return InputError(
        f"duplicate key {key!r} in one JSON object", path=path, line=line, field=key,
        hint="JSON readers keep only the last value; remove or rename one of them",
    )


# A JSON escape for a UTF-16 surrogate: the only way a str that UTF-8 cannot encode gets in.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _unencodable(value: Any) -> str | None:
    """The first string inside ``value`` that is not encodable as UTF-8 (a lone surrogate), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        found = _unencodable(item)
        if found is not None:
            return found
    return None


def _check_encodable(row: dict[str, Any], path: Path, line: int) -> None:
    """Refuse a row holding a lone surrogate (``"\\ud800"``), naming the field it is in."""
    for key, value in row.items():
        text = _unencodable(key) or _unencodable(value)
        if text is not None:
            position = next(i for i, char in enumerate(text) if 0xD800 <= ord(char) <= 0xDFFF)
            raise InputError(
                f"text not encodable as UTF-8: a lone surrogate \\u{ord(text[position]):04x} at character {position + 1}",
                path=path, line=line, field=key if _unencodable(key) is None else ascii(key)[1:-1],
                hint="a \\uD800-\\uDFFF escape must be half of a surrogate pair; fix or drop the escape",
            )


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file.

    Raises:
        InputError: missing file, BOM, invalid UTF-8, malformed JSON, a line that is not an object,
            a key repeated within an object, a lone surrogate in a string.
    """
    source = Path(path)
    for number, line in utf8_lines(source):  # one line at a time: memory does not grow with the file
        if not line.strip():
            continue
        try:
            value = _loads(line)
        except _DuplicateKey as error:
            raise _duplicate_key_error(source, number, error.key) from None
        except json.JSONDecodeError as error:
            hint = "each line must be one complete JSON object"
            if number == 1 and line.lstrip().startswith("["):
                hint = "this looks like a JSON array; name the file .json or write one object per line"
            raise InputError(f"malformed JSON ({error.msg} at column {error.colno})", path=source, line=number, hint=hint) from None
        except ValueError as error:
            failure = _limit_error(error, source, number)
            if failure is None:
                raise
            raise failure from None
        if not isinstance(value, dict):
            hint = "write one JSON object per line"
            if isinstance(value, list):
                hint = "this line is a JSON array; name the file .json for an array, or write one object per line"
            raise InputError(f"expected a JSON object, found {type(value).__name__}", path=source, line=number, hint=hint)
        if _SURROGATE_ESCAPE.search(line):
            _check_encodable(value, source, number)
        yield number, value


def iter_json_array(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(item_number, object)`` from a file holding one JSON array of objects (items from 1).

    Raises:
        InputError: as ``iter_jsonl``; a repeated key names the line where its object opens.
    """
    source = Path(path)
    text = _read_utf8(source)
    try:
        value = _loads(text)
    except _DuplicateKey as error:
        raise _duplicate_key_error(source, _duplicate_key_line(text), error.key) from None
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg})", path=source, line=error.lineno) from None
    except ValueError as error:
        failure = _limit_error(error, source, None)
        if failure is None:
            raise
        raise failure from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise InputError("expected a JSON array of objects", path=source, hint="or use JSON Lines (.jsonl)")
    check_surrogates = bool(_SURROGATE_ESCAPE.search(text))
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise InputError(f"item {number} is {type(item).__name__}, expected an object", path=source, line=number)
        if check_surrogates:
            _check_encodable(item, source, number)
        yield number, item


def iter_csv(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` from a CSV file with a header; empty cells become missing fields.

    Raises:
        InputError: as ``_read_utf8``; a header naming a column twice; a row with more cells than the header.
    """
    source = Path(path)
    reader = csv.DictReader(io.StringIO(_read_utf8(source), newline=""))
    try:
        yield from _csv_rows(reader, source)
    except csv.Error as error:  # a field over csv.field_size_limit(), a NUL byte, a bad quote
        line = reader.line_num + 1  # the reader counts a line only once it parsed it
        hint = f"the limit is {csv.field_size_limit():,} characters per cell; use JSONL for long texts" if "field limit" in str(error) else None
        raise InputError(f"unreadable CSV ({error})", path=source, line=line, hint=hint) from None


def _csv_rows(reader: csv.DictReader, source: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    header = reader.fieldnames or []
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(
            f"the header repeats the column {repeated[0]!r}", path=source, line=reader.line_num, field=repeated[0],
            hint="a CSV reader keeps only the last such column; rename or remove one",
        )
    for row in reader:
        if None in row:
            raise InputError("more cells than header columns", path=source, line=reader.line_num)
        yield reader.line_num, typed_cells({key: value for key, value in row.items() if value not in (None, "")}, source, reader.line_num)



#: Files ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` always write.
DATASET_FOLDER_MARKERS = ("state.json", "dataset_dict.json")


def iter_dataset_folder(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, row)`` from a folder written by ``datasets.Dataset.save_to_disk``.

    Raises:
        InputError: the folder holds no saved dataset.
    """
    source = Path(path)
    if not any((source / marker).is_file() for marker in DATASET_FOLDER_MARKERS):
        raise InputError(
            f"is a folder but not a saved datasets folder (it has no {' or '.join(DATASET_FOLDER_MARKERS)})",
            path=source, hint="give a .jsonl, .json or .csv file, or a folder written by Dataset.save_to_disk",
        )
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(source))
    except FileNotFoundError as error:
        raise InputError(f"cannot load the datasets folder ({error})", path=source) from None
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
