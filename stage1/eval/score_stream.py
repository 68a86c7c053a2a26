"""A responses file read one row at a time into verdict columns, for ``stage1 score`` on a sweep.

Each row is checked, scored and reduced to its verdicts, word count and token count
(``stage1.eval.columns``); its outcome, as results.json's ``items`` writes it, goes to a temporary
spool file on disk (in the system's temporary folder: ``TMPDIR``), remembered by offset. So memory
holds a few bytes per row whatever the rows' text: the statistics work from the columns, and
results.json is written item by item from the spool (``item_lines``) with the same bytes as
``report.results_json`` of the whole results.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stage1.core.criteria import CRITERION_NAMES, score_response
from stage1.core.errors import InputError
from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.core.format import STOP_MAX_TOKENS, STOP_REASONS, parse_completion
from stage1.core.lengths import word_count
from stage1.core.records import RecordError, _choice, _get, _id
from stage1.eval.columns import (
    COUNT_DTYPE,
    NOT_APPLICABLE,
    UNKNOWN_TOKENS,
    VERDICT_DTYPE,
    VerdictColumns,
    encode_verdicts,
)
from stage1.eval.report import item_line
from stage1.eval.summary import item_row, response_outcome
from stage1.io.readers import iter_rows

RESPONSE_FIELDS = ("item_id", "variant", "response", "stop_reason", "num_tokens")


class OutcomeSpool:
    """Outcomes' JSON text in an anonymous temporary file, read back by ``(offset, length)``."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._size = 0

    def add(self, text: str) -> tuple[int, int]:
        data = text.encode("utf-8")
        self._file.write(data)
        self._size += len(data)
        return self._size - len(data), len(data)

    def read(self, offset: int, length: int) -> str:
        return os.pread(self._file.fileno(), length, offset).decode("utf-8")

    def finish(self) -> None:
        """Flush what was added, so ``read`` sees it."""
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _Variant:
    """One variant's columns over every item of the file, filled as its rows come."""

    def __init__(self, size: int) -> None:
        self.lines = np.zeros(size, dtype=np.int64)  # 0: no row yet
        self.verdicts = np.full((size, len(CRITERION_NAMES)), NOT_APPLICABLE, dtype=VERDICT_DTYPE)
        self.words = np.zeros(size, dtype=COUNT_DTYPE)
        self.tokens = np.full(size, UNKNOWN_TOKENS, dtype=COUNT_DTYPE)
        self.spooled = np.zeros((size, 2), dtype=np.int64)  # (offset, length) in the spool


class ScoredResponses:
    """The verdict columns of a responses file over the items kept (in their order), and each
    response's outcome in the spool."""

    def __init__(self, columns: VerdictColumns, spooled: dict[str, np.ndarray], spool: OutcomeSpool) -> None:
        self.columns, self.spooled, self.spool = columns, spooled, spool

    def outcome_text(self, variant: str, position: int) -> str:
        offset, length = self.spooled[variant][position].tolist()
        return self.spool.read(offset, length)

    def item_lines(self, items: Sequence[EvalItem]) -> Iterator[str]:
        """Each item's entry of results.json's ``items`` (``report.item_line``), read from the spool."""
        keys = {v: json.dumps(v, ensure_ascii=False) for v in sorted(self.columns.variants)}  # sorted as json.dumps(sort_keys=True) orders them
        for position, item in enumerate(items):
            outcomes = ", ".join(f"{key}: {self.outcome_text(v, position)}" for v, key in keys.items())
            empty = item_line(item_row(item, {}))  # "outcomes" sorts last: the line ends with '"outcomes": {}}'
            yield empty[:-2] + outcomes + "}}"

    def rows(self, items: Sequence[EvalItem], shown: dict[str, set[str]]) -> list[dict[str, Any]]:
        """The items in ``shown`` as results.json's ``items`` entries, each with the response (all report.md
        quotes of an outcome) of the variants named there."""
        return [item_row(item, {v: {"response": json.loads(self.outcome_text(v, position))["response"]} for v in sorted(shown[item.id])})
                for position, item in enumerate(items) if item.id in shown]

    def __enter__(self) -> ScoredResponses:
        return self

    def __exit__(self, *_: object) -> None:
        self.spool.close()


def response_from_row(row: dict[str, Any], known_items: Container[str]) -> EvalResponse:
    """One responses-file row as the ``EvalResponse`` the criteria read.

    Raises:
        RecordError: an unknown field or item, a missing or mistyped field, an unknown stop reason.
    """
    for key in row:
        if key not in RESPONSE_FIELDS:
            raise RecordError(key, "unknown field", hint=f"allowed fields: {', '.join(RESPONSE_FIELDS)}")
    item_id = _id(row, "item_id")
    if item_id not in known_items:
        raise RecordError("item_id", f"no evaluation item has id {item_id!r}", hint="score responses against the items they answer")
    variant = _get(row, "variant", str).strip()
    if not variant:
        raise RecordError("variant", "is empty", hint="name the model that wrote the response, e.g. \"sft\"")
    text = _get(row, "response", str)
    stop_reason = None if row.get("stop_reason") is None else _choice(row, "stop_reason", STOP_REASONS)
    num_tokens = _get(row, "num_tokens", int, None)
    if num_tokens is not None and num_tokens < 0:
        raise RecordError("num_tokens", f"must be 0 or more, got {num_tokens}")
    parsed = parse_completion(text, finished_by_eos=stop_reason != STOP_MAX_TOKENS)
    return EvalResponse(
        item_id=item_id, variant=variant, prompt="", completion_text=text, response=parsed.response,
        stop_reason=stop_reason or parsed.stop_reason, runaway=parsed.runaway or stop_reason == "runaway", num_tokens=num_tokens,
    )


def _bad_row(error: RecordError, path: Path, line: int) -> InputError:
    return InputError(error.message, path=path, line=line, field=error.field, hint=error.hint)


def _add_row(variant: _Variant, item: EvalItem, response, spool: OutcomeSpool, position: int) -> None:
    verdicts = score_response(item, response)
    variant.verdicts[position] = encode_verdicts(verdicts)
    variant.words[position] = word_count(response.response)
    variant.tokens[position] = UNKNOWN_TOKENS if response.num_tokens is None else response.num_tokens
    variant.spooled[position] = spool.add(json.dumps(response_outcome(response, verdicts), ensure_ascii=False, sort_keys=True))


def _read_rows(path: Path, items: Sequence[EvalItem], position: dict[str, int], kept: set[str], spool: OutcomeSpool) -> dict[str, _Variant]:
    """Every row checked and recorded (``position``: each item's index in ``items``); the rows of
    ``kept`` items scored and spooled."""
    variants: dict[str, _Variant] = {}
    for line, row in iter_rows(path):
        try:
            response = response_from_row(row, position)
        except RecordError as error:
            raise _bad_row(error, path, line) from None
        variant = variants.get(response.variant)
        if variant is None:
            variant = variants[response.variant] = _Variant(len(items))
        k = position[response.item_id]
        if variant.lines[k]:
            raise InputError(f"variant {response.variant!r} answers item {response.item_id!r} twice (first on line {variant.lines[k]})",
                             path=path, line=line, field="item_id", hint="keep one response per item and variant")
        variant.lines[k] = line
        if response.item_id in kept:
            _add_row(variant, items[k], response, spool, k)
    return variants


def _check_complete(path: Path, items: Sequence[EvalItem], variants: dict[str, _Variant]) -> None:
    if not variants:
        raise InputError("no responses", path=path, hint='one JSON object per line: {"item_id", "variant", "response"}')
    for name, variant in variants.items():
        missing = [items[k].id for k in np.flatnonzero(variant.lines == 0).tolist()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(f"variant {name!r} has no response to {len(missing)} item(s): {shown}", path=path, field="item_id",
                             hint="every variant answers every item (or give the items file the responses cover)")


def read_scored(path: str | Path, items: Sequence[EvalItem], kept: Sequence[EvalItem] | None = None) -> ScoredResponses:
    """The responses file scored against ``kept`` (default: every item), variants in the order they
    first appear; rows answering the other ``items`` are checked but not scored. Close its ``spool``.

    Raises:
        InputError: a bad row (file, line, field), the same (variant, item) twice, a variant
            without a response to some item, or no rows.
    """
    source, kept = Path(path), list(items if kept is None else kept)
    position = {item.id: k for k, item in enumerate(items)}
    spool = OutcomeSpool()
    try:
        variants = _read_rows(source, items, position, {item.id for item in kept}, spool)
        _check_complete(source, items, variants)
    except BaseException:
        spool.close()
        raise
    spool.finish()
    rows = np.array([position[item.id] for item in kept], dtype=np.intp)
    columns = VerdictColumns([item.id for item in kept], {name: v.verdicts[rows] for name, v in variants.items()},
                             {name: v.words[rows] for name, v in variants.items()}, {name: v.tokens[rows] for name, v in variants.items()})
    return ScoredResponses(columns, {name: v.spooled[rows] for name, v in variants.items()}, spool)
