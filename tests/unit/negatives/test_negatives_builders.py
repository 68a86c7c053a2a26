"""How each kind is built: fact tables, factual changes at whole-word boundaries, format violations,
constraint detection. Literal inputs and outputs, so a regex that never matches fails here."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.records import SFTExample
from stage1.core.text_keys import dedup_key
from stage1.negatives import format_violation as fv
from stage1.negatives.facts import ANTONYMS, CAPITALS, ENTITY_CLASSES
from stage1.negatives.factual import NUMBER_PATTERN, changed_number, falsify, match_case


def test_fact_tables_are_unambiguous():
    countries = [c for c, _ in CAPITALS]
    capitals = [c for _, c in CAPITALS]
    assert len(set(countries)) == len(countries) and len(set(capitals)) == len(capitals)
    words = [w for pair in ANTONYMS for w in pair]
    assert len(set(words)) == len(words), "each antonym word belongs to one pair, so the swap is defined"
    names = [n.casefold() for names in ENTITY_CLASSES.values() for n in names]
    assert len(set(names)) == len(names), "a name in two classes would have two meanings"
    assert dict(CAPITALS)["France"] == "Paris" and dict(CAPITALS)["Australia"] == "Canberra"


@pytest.mark.parametrize(
    "text, numbers",
    [
        ("12 plus 30 is 42.", ["12", "30", "42"]),
        ("It costs 1,000 dollars, or 3.5 each.", ["1,000", "3.5"]),
        ("Water is H2O; the 3rd item", []),
        ("Items: 1, 2, 3.", ["1", "2", "3"]),
        ("In 1945.", ["1945"]),
    ],
)
def test_number_pattern_finds_whole_numbers_only(text, numbers):
    assert [m.group(0) for m in NUMBER_PATTERN.finditer(text)] == numbers


def test_changed_numbers_keep_their_form():
    rng = random.Random(0)
    for _ in range(200):
        year = changed_number("1945", rng)
        assert year != "1945" and len(year) == 4 and abs(int(year) - 1945) <= 30
        assert changed_number("7", rng) != "7" and int(changed_number("0", rng)) >= 0
        thousands = changed_number("1,000", rng)
        value = int(thousands.replace(",", ""))
        assert value != 1000 and thousands == f"{value:,}", "thousands separators kept"
        decimal = changed_number("3.5", rng)
        assert decimal != "3.5" and len(decimal.split(".")[1]) == 1


@pytest.mark.parametrize(
    "instruction, response, expected_change",
    [
        ("What is the capital of France?", "The capital of France is Paris.", ("Paris", "entity:capital")),
        ("What is 12 plus 30?", "12 plus 30 is 42.", ("42", "number")),
        ("What is the opposite of hot?", "The opposite of hot is cold.", ("cold", "antonym")),
        ("Is the sun a star?", "Yes.", ("Yes", "yes_no")),
        ("How many legs does a spider have?", "A spider has eight legs.", ("eight", "number_word")),
        ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet.", ("Mars", "entity:planet")),
    ],
)
def test_factual_changes_the_answer_not_the_question(instruction, response, expected_change):
    original, method = expected_change
    for seed in range(10):
        falsified, used = falsify(response, instruction, random.Random(seed))
        assert used == method
        assert falsified != response
        assert original not in falsified.split(" ") and original + "." not in falsified.split(" ")


@pytest.mark.parametrize(
    "instruction, response, expected",
    [
        # The question's subject stays; the answer changes.
        ("Why is Iceland cold?", "Iceland is cold because it is far north.", "Iceland is cold because it is far south."),
        # Only the question's words are editable: not applicable, never a canned sentence.
        ("Who was the first president of France?", "The first president of France was Louis-Napoléon Bonaparte.", None),
        # The other option the instruction offers is the wrong answer to the same question.
        ("Answer yes or no: is the sun a star?", "Yes.", "No."),
        ("Is ice hot or cold?", "Ice is cold.", "Ice is hot."),
    ],
)
def test_factual_never_edits_what_the_instruction_names(instruction, response, expected):
    for seed in range(20):
        falsified = falsify(response, instruction, random.Random(seed))
        assert (falsified[0] if falsified else None) == expected


_WORDS = ["Iceland", "Serbia", "France", "Paris", "Lima", "cold", "hot", "north", "south", "far", "is", "the",
          "of", "capital", "42", "1945", "seven", "three", "and", "or"]
_sentences = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8).map(" ".join)


@given(st.sampled_from(["", "Yes, ", "No, "]), _sentences, _sentences, st.booleans(), st.integers(0, 9))
def test_words_the_instruction_names_survive_unless_swapped_for_an_offered_option(lead, response, instruction, offer, seed):
    """Every word the instruction and the response share is still in the incorrect response, unless
    the edit put in its place a word the instruction also names (the other option it offers)."""
    response, instruction = f"{lead}{response}.", ("Yes or no: " if offer else "") + instruction + "?"
    falsified = falsify(response, instruction, random.Random(seed))
    if falsified is None:
        return
    asked = set(dedup_key(instruction).split())
    before, after = Counter(dedup_key(response).split()), Counter(dedup_key(falsified[0]).split())
    removed, added = before - after, after - before
    assert removed and added, falsified
    if set(removed) & asked:
        assert set(added) <= asked, (response, instruction, falsified)


def test_antonyms_swap_whole_words_only_and_keep_case():
    assert falsify("Scold the cat.", "What now?", random.Random(0)) is None
    assert falsify("Cold!", "?", random.Random(0)) == ("Hot!", "antonym")
    assert match_case("COLD", "hot") == "HOT" and match_case("cold", "hot") == "hot"


def test_entities_are_replaced_by_their_own_kind():
    capitals = set(ENTITY_CLASSES["capital"])
    for seed in range(30):
        falsified, method = falsify("The capital of Peru is Lima.", "What is the capital of Peru?", random.Random(seed))
        new = falsified.removeprefix("The capital of Peru is ").removesuffix(".")
        assert method == "entity:capital" and new in capitals and new != "Lima"


def test_nothing_to_change_is_not_applicable():
    assert falsify("Hello there!", "Say hello.", random.Random(0)) is None
    assert falsify("Rain tapped softly on the window.", "Write about rain.", random.Random(0)) is None


@pytest.mark.parametrize(
    "instruction, constraint",
    [
        ("In one word, what colour is grass?", ("one_word", None)),
        ("Answer with a single word: capital of Peru?", ("one_word", None)),
        ("Answer yes or no: is ice cold?", ("yes_no", None)),
        ("Give only the number: legs on a spider?", ("number", None)),
        ("In one sentence, why do we sleep?", ("one_sentence", None)),
        ("List three fruits.", ("n_items", 3)),
        ("Name exactly 4 planets.", ("n_items", 4)),
        ("Give me a list of five colours.", ("n_items", 5)),
        ("What is the capital of France?", None),
        ("Listen to the sound of one hand.", None),
    ],
)
def test_constraints_are_found(instruction, constraint):
    assert fv.find_constraint(instruction) == constraint


def _example(instruction, response):
    return SFTExample(id="x", instruction=instruction, response=response)


@pytest.mark.parametrize(
    "instruction, response, kind, n, expected",
    [
        ("List three fruits.", "Apple, banana and cherry.", "n_items", 3, " Apple and banana.\nEND"),
        ("List three fruits.", "1. Apple\n2. Banana\n3. Cherry", "n_items", 3, " 1. Apple\n2. Banana\nEND"),
        ("Answer yes or no: is ice cold?", "Yes, ice is cold.", "yes_no", None, " Ice is cold.\nEND"),
    ],
)
def test_ignoring_a_constraint_breaks_exactly_that_constraint(instruction, response, kind, n, expected):
    assert fv.ignoring_constraint(_example(instruction, response), kind, n, random.Random(0)) == expected


def test_one_word_and_number_answers_are_wrapped_in_sentences():
    wrapped = fv.ignoring_constraint(_example("In one word: colour of grass?", "Green."), "one_word", None, random.Random(1))
    assert "Green" in wrapped and len(wrapped.split()) > 3 and ".." not in wrapped
    number = fv.ignoring_constraint(_example("Only the number: 2 plus 2?", "4"), "number", None, random.Random(1))
    assert " 4" in number and number.endswith("\nEND") and number != " 4\nEND"


def test_truncation_cuts_mid_sentence_and_leaves_short_answers_alone():
    example = _example("How do you boil an egg?", "Place the egg in boiling water for nine minutes, then cool it.")
    for seed in range(20):
        cut = fv.truncated(example, random.Random(seed))
        text = cut.removesuffix("\nEND").strip()
        assert example.response.startswith(text) and text != example.response
        assert text[-1] not in ".,!?;:"
    assert fv.truncated(_example("Capital of France?", "Paris."), random.Random(0)) is None
    assert fv.truncated(_example("Say it.", "It is done now."), random.Random(0)) is not None


def test_missing_end_and_runaway_break_the_ending():
    example = _example("Capital of France?", "Paris.")
    assert fv.missing_end(example) == " Paris."
    assert fv.runaway(example, "Capital of Spain?", None) == " Paris.\nInstruction: Capital of Spain?"
    assert fv.runaway(example, "Capital of Spain?", "Madrid.") == " Paris.\nInstruction: Capital of Spain?\nResponse: Madrid."
