"""Evaluation items and responses: the schema, round trips, and errors that name file, line and field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.errors import InputError
from stage1.core.eval_items import Constraint, EvalItem, EvalResponse
from stage1.core.records import SPECIAL_TOKEN_TEXT
from stage1.io.records import read_eval_items
from tests.strategies import format_text

GOOD = {
    "id": "q1",
    "instruction": "What is the capital of France?",
    "category": "geography",
    "reference": "Paris",
    "aliases": ["paris"],
    "constraint": {"kind": "one_word"},
    "topic_keywords": ["France", "capital"],
    "safe": True,
}


def write_items(tmp_path, rows):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_reads_the_documented_schema(tmp_path):
    items = read_eval_items(write_items(tmp_path, [GOOD, {**GOOD, "id": "q2", "reference": None, "aliases": [], "constraint": None}]))
    first = items[0]
    assert first.accepted_answers == ("Paris", "paris")
    assert first.constraint == Constraint("one_word")
    assert first.topic_keywords == ("France", "capital")
    assert items[1].accepted_answers == () and items[1].constraint is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"constraint": {"kind": "n_items"}}, "constraint.n"),
        ({"constraint": {"kind": "one_word", "n": 2}}, "constraint.n"),
        ({"constraint": {"kind": "two_words"}}, "constraint.kind"),
        ({"reference": None}, "aliases"),
        ({"aliases": ["ok", ""]}, "aliases[1]"),
        ({"topic_keywords": "France"}, "topic_keywords"),
        ({"safe": "yes"}, "safe"),
        ({"instruction": "Question\nEND"}, "instruction"),
        ({"answer": "Paris"}, "answer"),
        ({"reference": "  "}, "reference"),
    ],
)
def test_bad_items_name_the_file_line_and_field(tmp_path, change, field):
    path = write_items(tmp_path, [{**GOOD, "id": "ok"}, {**GOOD, **change}])
    with pytest.raises(InputError) as caught:
        read_eval_items(path)
    assert caught.value.line == 2
    assert caught.value.field == field
    assert str(path) in str(caught.value)


def test_duplicate_ids_and_empty_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="duplicate id"):
        read_eval_items(write_items(tmp_path, [GOOD, GOOD]))
    with pytest.raises(InputError, match="no evaluation items"):
        read_eval_items(write_items(tmp_path, []))


items = st.builds(
    EvalItem,
    id=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    instruction=format_text.filter(lambda text: not SPECIAL_TOKEN_TEXT.search(text)),
    category=st.sampled_from(["math", "geography", "general"]),
    reference=st.one_of(st.none(), st.sampled_from(["Paris", "4"])),
    aliases=st.just(()),
    constraint=st.one_of(st.none(), st.builds(Constraint, kind=st.just("n_items"), n=st.integers(1, 5)), st.just(Constraint("yes_no"))),
    topic_keywords=st.lists(st.sampled_from(["alpha", "beta"]), max_size=2).map(tuple),
    safe=st.booleans(),
)


@given(items)
def test_items_round_trip_through_json(item):
    """from_dict(json(to_dict(item))) == item, for any text the format accepts."""
    from stage1.core.format import normalize_text

    item = EvalItem(**{**item.__dict__, "instruction": normalize_text(item.instruction)})
    assert EvalItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item


def test_response_round_trip_and_validation():
    response = EvalResponse("q1", "sft", "Instruction: x\nResponse:", " Paris\nEND", "Paris", "end", False, 3)
    assert EvalResponse.from_dict(json.loads(json.dumps(response.to_dict()))) == response
    with pytest.raises(ValueError, match="stop_reason"):
        EvalResponse.from_dict({**response.to_dict(), "stop_reason": "tired"})
