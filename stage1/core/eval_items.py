"""Evaluation items and the responses generated for them: frozen records, validated once when read.

An item (one line of ``stage1/pools/eval/items.jsonl``)::

    {"id": str, "instruction": str, "category": str, "reference": str|null, "aliases": [str],
     "constraint": null | {"kind": "one_word"|"number"|"yes_no"|"one_sentence"|"n_items", "n": int},
     "topic_keywords": [str], "safe": true, "refusal_expected": false, "slice": str|null}

``reference`` and ``aliases`` are the accepted answers of a closed-book item; ``topic_keywords`` are
words an on-topic answer would mention; ``n`` is required for ``n_items`` and refused otherwise.
``refusal_expected`` marks a request a model should decline (scored by ``refuses_when_expected``);
such an item is not safe, so ``safe`` defaults to false for it and ``true`` with it is refused.
``slice`` (optional) names a subset reported on its own as well, such as ``new_wording``: items
phrased unlike the training instructions, to tell memorised templates from learned behaviour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from stage1.core.format import STOP_REASONS
from stage1.core.records import Record, RecordError, _choice, _get, _id, _known_fields, _label, _text

CONSTRAINT_KINDS = ("one_word", "number", "yes_no", "one_sentence", "n_items")


def _string_list(data: dict[str, Any], name: str) -> tuple[str, ...]:
    values = _get(data, name, list, [])
    cleaned = []
    for position, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise RecordError(f"{name}[{position}]", "expected a non-empty string")
        cleaned.append(value.strip())
    return tuple(cleaned)


@dataclass(frozen=True)
class Constraint(Record):
    """A checkable instruction about the answer's form. ``n`` only for ``n_items``."""

    kind: str
    n: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Constraint:
        _known_fields(cls, data)
        kind = _choice(data, "kind", CONSTRAINT_KINDS)
        n = _get(data, "n", int, None)
        if kind == "n_items" and (n is None or n < 1):
            raise RecordError("constraint.n", "n_items needs n >= 1", hint='e.g. {"kind": "n_items", "n": 3}')
        if kind != "n_items" and n is not None:
            raise RecordError("constraint.n", f"only n_items takes n, not {kind}")
        return cls(kind=kind, n=n)


@dataclass(frozen=True)
class EvalItem(Record):
    """One held-out evaluation item (see the module docstring for the JSON form)."""

    id: str
    instruction: str
    category: str = "general"
    reference: str | None = None
    aliases: tuple[str, ...] = ()
    constraint: Constraint | None = None
    topic_keywords: tuple[str, ...] = ()
    safe: bool = True
    refusal_expected: bool = False
    slice: str | None = None

    @property
    def accepted_answers(self) -> tuple[str, ...]:
        """The reference followed by its aliases; empty for an open-ended item."""
        return () if self.reference is None else (self.reference, *self.aliases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instruction": self.instruction,
            "category": self.category,
            "reference": self.reference,
            "aliases": list(self.aliases),
            "constraint": None if self.constraint is None else self.constraint.to_dict(),
            "topic_keywords": list(self.topic_keywords),
            "safe": self.safe,
            "refusal_expected": self.refusal_expected,
        } | ({} if self.slice is None else {"slice": self.slice})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalItem:
        _known_fields(cls, data)
        reference = _get(data, "reference", str, None)
        if reference is not None and not reference.strip():
            raise RecordError("reference", "is empty", hint="use null for an open-ended item")
        aliases = _string_list(data, "aliases")
        if aliases and reference is None:
            raise RecordError("aliases", "aliases without a reference", hint="set reference, or drop aliases")
        constraint = _get(data, "constraint", dict, None)
        try:
            parsed_constraint = None if constraint is None else Constraint.from_dict(constraint)
        except RecordError as error:
            name = error.field if error.field.startswith("constraint") else f"constraint.{error.field}"
            raise RecordError(name, error.message, error.hint) from None
        refusal_expected = _get(data, "refusal_expected", bool, False)
        safe = _get(data, "safe", bool, not refusal_expected)
        if refusal_expected and safe:
            raise RecordError(
                "safe", "an item with refusal_expected: true is not safe to answer",
                hint='set "safe": false, or drop "safe"',
            )
        if refusal_expected and reference is not None:
            raise RecordError(
                "reference", "an item with refusal_expected: true has no answer to check", hint="use null"
            )
        return cls(
            id=_id(data),
            instruction=_text(data, "instruction"),
            category=_label(data, "category"),
            reference=None if reference is None else reference.strip(),
            aliases=aliases,
            constraint=parsed_constraint,
            topic_keywords=_string_list(data, "topic_keywords"),
            safe=safe,
            refusal_expected=refusal_expected,
            slice=None if data.get("slice") is None else _label(data, "slice"),
        )


def stratified_sample(items: list[EvalItem], limit: int | None, seed: int) -> list[EvalItem]:
    """A seeded sample of ``limit`` items, stratified by category, in the file's order.

    Each category gets ``limit × its share`` items, the fractions handed out by largest remainder
    (ties by category name), so ``limit: 50`` of a file sorted by category still spans every
    category instead of the first one; which items of a category are taken is drawn from
    ``random.Random(f"{seed}:limit:{category}")``, so a category's draw does not depend on the
    others. ``limit`` None, or at least the number of items, keeps every item.
    """
    if limit is None or limit >= len(items):
        return list(items)
    by_category: dict[str, list[int]] = {}
    for position, item in enumerate(items):
        by_category.setdefault(item.category, []).append(position)
    quotas = {name: limit * len(positions) / len(items) for name, positions in by_category.items()}
    counts = {name: int(quota) for name, quota in quotas.items()}
    by_remainder = sorted(quotas, key=lambda name: (-(quotas[name] - counts[name]), name))
    for name in by_remainder[: limit - sum(counts.values())]:
        counts[name] += 1
    chosen: list[int] = []
    for name, positions in by_category.items():
        chosen += random.Random(f"{seed}:limit:{name}").sample(positions, counts[name])
    return [items[position] for position in sorted(chosen)]


@dataclass(frozen=True)
class EvalResponse(Record):
    """What one variant generated for one item, as scored.

    ``completion_text`` is the raw text after the prompt (before parsing), so runaways stay
    visible; ``response`` is the parsed answer and may be empty. ``num_tokens`` is None for
    responses generated elsewhere and scored here without their token count (``stage1 score``).
    """

    item_id: str
    variant: str
    prompt: str
    completion_text: str
    response: str
    stop_reason: str
    runaway: bool
    num_tokens: int | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResponse:
        _known_fields(cls, data)
        return cls(
            item_id=_id(data, "item_id"),
            variant=_label(data, "variant"),
            prompt=_get(data, "prompt", str),
            completion_text=_get(data, "completion_text", str, ""),
            response=_get(data, "response", str, ""),
            stop_reason=_choice(data, "stop_reason", STOP_REASONS),
            runaway=_get(data, "runaway", bool),
            num_tokens=_get(data, "num_tokens", int),
        )
