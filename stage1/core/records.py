"""Records that cross a stage boundary: frozen dataclasses, validated once when read.

``from_dict`` raises ``RecordError`` naming the field; ``read_records`` adds the file and line.
Nothing downstream re-checks a record's shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from stage1.core.errors import InputError
from stage1.core.format import BLANK_MESSAGE, FormatError, check_text
from stage1.core.text_keys import dedup_key, is_blank

NEGATIVE_KINDS = (
    "unwarranted_refusal",
    "format_violation",
    "factually_incorrect",
    "off_topic",
    "verbose_vague",
    "complied_when_refusal_expected",
)
SPLITS = ("train", "eval")
#: Where a rejected response came from: the rule-made negatives, or the SFT model's own samples.
NEGATIVE_SOURCES = ("rules", "policy")
#: A policy negative's kind names the criteria its rejected sample failed: ``policy:no_runaway+not_degenerate``.
POLICY_KIND_PREFIX = "policy:"
_POLICY_KIND = re.compile(re.escape(POLICY_KIND_PREFIX) + r"[a-z_]+(?:\+[a-z_]+)*")


def policy_kind(failed_criteria: Iterable[str]) -> str:
    """The kind label of a policy negative: the criteria it failed, in the order given (report order).

    Raises:
        ValueError: no criterion (a sample that failed nothing is not a negative).
    """
    names = list(failed_criteria)
    if not names:
        raise ValueError("a policy negative must fail at least one criterion")
    return POLICY_KIND_PREFIX + "+".join(names)


def _negative_kind(data: dict[str, Any], name: str, source: str) -> str:
    """A rule kind for rule-made negatives, a ``policy:`` kind for policy ones."""
    if source == "rules":
        return _choice(data, name, NEGATIVE_KINDS)
    value = _get(data, name, str)
    if not _POLICY_KIND.fullmatch(value):
        raise RecordError(name, f"{value!r} is not a policy kind", hint="policy:<criterion>[+<criterion>...], the criteria the sample failed")
    return value


class RecordError(ValueError):
    """A field of one record is missing, of the wrong type, or refused."""

    def __init__(self, field: str, message: str, hint: str | None = None):
        super().__init__(f"field '{field}': {message}")
        self.field = field
        self.message = message
        self.hint = hint


def _known_fields(cls: type, data: dict[str, Any]) -> None:
    allowed = {f.name for f in fields(cls)}
    for key in data:
        if key not in allowed:
            raise RecordError(key, "unknown field", hint=f"allowed fields: {', '.join(sorted(allowed))}")


def _get(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in data or data[name] is None:
        if default is ...:
            raise RecordError(name, "missing")
        return default
    value = data[name]
    expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
    if isinstance(value, bool) and kind is not bool:  # a bool is an int to isinstance, never a count or an id
        raise RecordError(name, f"expected {expected}, got a boolean")
    if not isinstance(value, kind):
        raise RecordError(name, f"expected {expected}, got {type(value).__name__}")
    return value


def _id(data: dict[str, Any], name: str = "id") -> str:
    value = _get(data, name, (str, int))
    text = str(value).strip()
    if not text:
        raise RecordError(name, "is empty")
    return text


#: Longest instruction or response accepted, in characters. Far above any real training row
#: (Qwen2.5's context is 32k tokens); a larger value is almost always a broken export.
MAX_TEXT_CHARS = 100_000


#: Control-token text such as ``<|endoftext|>`` or ``<|im_start|>``. The tokenizer helpers would
#: encode it as plain text, but in a data file it is almost always a leaked chat template or a
#: concatenation artefact, so files that carry it are refused at the edge with the field named.
SPECIAL_TOKEN_TEXT = re.compile(r"<\|[A-Za-z0-9_]+\|>")


def _no_special_tokens(name: str, value: str) -> str:
    """``value``, refused when it holds special-token text: every text that reaches a tokenizer
    (instructions, responses, negatives' completions, pairs' prompt, chosen and rejected) is checked."""
    special = SPECIAL_TOKEN_TEXT.search(value)
    if special:
        raise RecordError(
            name,
            f"contains the special-token text {special.group(0)!r}",
            hint="remove control tokens from the data; the format never needs them",
        )
    return value


def _text(data: dict[str, Any], name: str) -> str:
    value = _get(data, name, str)
    if len(value) > MAX_TEXT_CHARS:
        raise RecordError(name, f"is {len(value):,} characters; the limit is {MAX_TEXT_CHARS:,}", hint="split or shorten it")
    _no_special_tokens(name, value)
    try:
        return check_text(value, name)
    except FormatError as error:
        raise RecordError(name, error.reason) from None


def _label(data: dict[str, Any], name: str, default: str = "general") -> str:
    value = _get(data, name, str, default).strip()
    if not value:
        raise RecordError(name, "is empty")
    return value


def _choice(data: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = _get(data, name, str)
    if value not in choices:
        raise RecordError(name, f"unknown value {value!r}", hint=f"one of: {', '.join(choices)}")
    return value


class Record:
    """Mixin: ``to_dict`` and a typed ``from_dict`` on frozen dataclasses."""

    name: ClassVar[str] = "record"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # pragma: no cover - each record defines its own
        raise NotImplementedError


def plain_fields(record: Any) -> dict[str, Any]:
    """``record.to_dict()`` for a record whose fields are all plain values, without ``asdict``'s deep
    copy (a third of the negatives stage's time at 100,000 examples)."""
    return dict(vars(record))


@dataclass(frozen=True)
class InstructionRecord(Record):
    """One instruction from a pool. ``category`` is a free label used for grouping and reports.

    ``refusal_expected`` marks a request a model should decline: it gets no ``unwarranted_refusal``
    negatives, its chosen response may be a refusal, and it may get
    ``complied_when_refusal_expected`` negatives instead.
    """

    id: str
    instruction: str
    category: str = "general"
    refusal_expected: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstructionRecord:
        _known_fields(cls, data)
        return cls(
            id=_id(data),
            instruction=_text(data, "instruction"),
            category=_label(data, "category"),
            refusal_expected=_get(data, "refusal_expected", bool, False),
        )


@dataclass(frozen=True)
class SFTExample(Record):
    """An instruction with its response. ``source`` says where the response came from.

    ``refusal_expected`` as on ``InstructionRecord``: the response may then be a refusal.
    """

    id: str
    instruction: str
    response: str
    category: str = "general"
    source: str = "file"
    stop_reason: str | None = None
    num_tokens: int | None = None
    refusal_expected: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SFTExample:
        _known_fields(cls, data)
        num_tokens = _get(data, "num_tokens", int, None)
        return cls(
            id=_id(data),
            instruction=_text(data, "instruction"),
            response=_text(data, "response"),
            category=_label(data, "category"),
            source=_label(data, "source", "file"),
            stop_reason=_get(data, "stop_reason", str, None),
            num_tokens=num_tokens,
            refusal_expected=_get(data, "refusal_expected", bool, False),
        )


@dataclass(frozen=True)
class NegativeRecord(Record):
    """A bad response for one instruction.

    ``completion`` is the exact text that follows the prompt, as the model would write it: for
    most kinds ``render_completion(text)``, for ``format_violation`` a deliberately broken one
    (no ``END``, a runaway into a new ``Instruction:``, a truncation).
    """

    instruction_id: str
    kind: str
    completion: str
    method: str
    source_instruction_id: str | None = None
    negative_source: str = "rules"  # "rules", or "policy" for a sample of the SFT model (files without it are rule-made)
    chosen: str | None = None  # policy only: a sample's completion to prefer instead of the SFT reference

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NegativeRecord:
        _known_fields(cls, data)
        completion = _no_special_tokens("completion", _get(data, "completion", str))
        if is_blank(completion):
            raise RecordError("completion", "is empty" if not completion.strip() else BLANK_MESSAGE)
        source = _get(data, "negative_source", str, "rules")
        if source not in NEGATIVE_SOURCES:
            raise RecordError("negative_source", f"unknown value {source!r}", hint=f"one of: {', '.join(NEGATIVE_SOURCES)}")
        chosen = _get(data, "chosen", str, None)
        if chosen is not None and source != "policy":
            raise RecordError("chosen", "only a policy negative may carry its own chosen completion")
        return cls(
            instruction_id=_id(data, "instruction_id"),
            kind=_negative_kind(data, "kind", source),
            completion=completion,
            method=_label(data, "method", "rule"),
            source_instruction_id=_get(data, "source_instruction_id", (str, int), None),
            negative_source=source,
            chosen=chosen,
        )


@dataclass(frozen=True)
class PreferencePair(Record):
    """A DPO pair in TRL's preference form plus bookkeeping.

    ``prompt`` is ``render_prompt(instruction)``, ``chosen`` is ``render_completion(response)``,
    ``rejected`` a negative's completion: byte-identical to what SFT, generation and evaluation see.
    ``rejected`` may not equal ``chosen`` after ``text_keys.dedup_key``: " paris\nEND" is the
    answer " Paris.\nEND" again, and a pair that prefers one to the other teaches only noise.
    """

    prompt: str
    chosen: str
    rejected: str
    instruction_id: str
    category: str
    negative_kind: str
    split: str
    negative_source: str = "rules"  # where the rejected came from (NEGATIVE_SOURCES); older files are rule-made

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreferencePair:
        _known_fields(cls, data)
        values = {name: _no_special_tokens(name, _get(data, name, str)) for name in ("prompt", "chosen", "rejected")}
        for name, value in values.items():
            if is_blank(value):
                raise RecordError(name, "is empty" if not value.strip() else BLANK_MESSAGE)
        if dedup_key(values["chosen"]) == dedup_key(values["rejected"]):
            raise RecordError(
                "rejected", "equals chosen once case, spacing and punctuation are ignored", hint="drop the pair"
            )
        source = _get(data, "negative_source", str, "rules")
        if source not in NEGATIVE_SOURCES:
            raise RecordError("negative_source", f"unknown value {source!r}", hint=f"one of: {', '.join(NEGATIVE_SOURCES)}")
        return cls(
            **values,
            instruction_id=_id(data, "instruction_id"),
            category=_label(data, "category"),
            negative_kind=_negative_kind(data, "negative_kind", source),
            split=_choice(data, "split", SPLITS),
            negative_source=source,
        )


R = TypeVar("R", bound=Record)


@dataclass
class BadRows:
    """Rows skipped under ``on_bad_rows="skip"``: a count and the first offending lines."""

    count: int = 0
    first: list[str] = field(default_factory=list)
    keep: int = 10

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.first) < self.keep:
            self.first.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "first": list(self.first)}


class RecordList(list):
    """The records ``read_records`` returns, with ``lines``: each record's line (or item) in its file."""

    def __init__(self, records: Iterable[Any] = (), lines: Iterable[int] = ()):
        super().__init__(records)
        self.lines = list(lines)


def record_line(records: list[Any], index: int) -> int | None:
    """The file line of ``records[index]``, when ``records`` came from ``read_records`` (which indexed
    each record's line as it read it); ``None`` for a plain list."""
    lines = getattr(records, "lines", None)
    if isinstance(lines, list) and len(lines) == len(records) and 0 <= index < len(lines):
        return lines[index]
    return None


def check_unique_ids(records: Iterable[Any], path: str | Path, attribute: str = "id") -> None:
    """Refuse duplicate ids, naming both rows by their line in the file.

    ``records`` as ``read_records`` returned them knows each row's line (a CSV header, blank lines
    and skipped rows included); any other sequence is numbered by position, and says so.
    """
    records = records if isinstance(records, list) else list(records)
    lines = getattr(records, "lines", None)
    by_line = isinstance(lines, list) and len(lines) == len(records)
    seen: dict[str, int] = {}
    for position, record in enumerate(records, start=1):
        key = getattr(record, attribute)
        where = lines[position - 1] if by_line else position
        if key in seen:
            message = f"duplicate id {key!r} (first seen on line {seen[key]})" if by_line else (
                f"duplicate id {key!r} in records {seen[key]} and {position}"
            )
            raise InputError(
                message, path=path, line=where if by_line else None, field=attribute, hint="ids must be unique within a file"
            )
        seen[key] = where
