"""Text reading under the criteria: number words, inflections, text without content, and the claim
of a yes/no question (``stage1.core.criteria_text`` and ``criteria_content``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.criteria import (
    commits_to_answer,
    count_items,
    digits_for_number_words,
    has_content,
    inflections,
    question_claim,
    yes_no_answer,
)

UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def spelled(number: int, hyphen: bool, british_and: bool) -> str:
    """English words for 0 <= number < 10**9, written independently of the code under test."""
    if number < 20:
        return UNITS[number]
    if number < 100:
        tens, unit = divmod(number, 10)
        return TENS[tens - 2] + (("-" if hyphen else " ") + UNITS[unit] if unit else "")
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if number >= size:
            head, rest = divmod(number, size)
            words = f"{spelled(head, hyphen, british_and)} {name}"
            if rest:
                words += (" and " if british_and and rest < 100 else " ") + spelled(rest, hyphen, british_and)
            return words
    raise AssertionError(number)


@given(number=st.integers(0, 999_999_999), hyphen=st.booleans(), british_and=st.booleans())
def test_every_number_in_words_reads_as_its_digits(number, hyphen, british_and):
    words = spelled(number, hyphen, british_and)
    assert digits_for_number_words(f"It is {words}.") == f"It is {number}."
    assert digits_for_number_words(words.capitalize()) == str(number)


@pytest.mark.parametrize("text", ["The one on the left.", "No one knows.", "one two three", "Two and three.", "Hundred.",
                                  "Someone ate it.", "A tone of voice.", "nineteen eighty-four"])
def test_words_that_are_not_one_number_stay_words(text):
    assert digits_for_number_words(text) == text


@pytest.mark.parametrize(("text", "reference", "commits"), [
    ("80 minus 80 is 108.", "80", False),  # "Compute 8 times 10.": 80 is only an operand
    ("50 minus 60 is 17. Taking 50 away from 60 leaves 5.", "50", False),
    ("Taking 22 away from 24 leaves 24.", "22", False),
    ("Adding 40 to 60 gives 90.", "60", False),
    ("4 groups of 12 make 40.", "12", False),
    ("2 plus 3 plus 4 is 10.", "4", False),
    ("Eight times ten is eighty.", "10", False),
    ("8 times 10 is 80.", "80", True),  # the result still counts
    ("24 minus 12 is 12.", "12", True),  # an operand equal to the result: the result counts
    ("Taking 2 away from 24 leaves 22.", "22", True),
    ("It is 80, because 8 times 10 is 80.", "80", True),
    ("The answer is 7.", "7", True),
])
def test_the_numbers_of_a_restated_sum_are_operands_not_answers(text, reference, commits):
    assert commits_to_answer(text, (reference,)) is commits


@given(a=st.integers(0, 999), b=st.integers(0, 999), op=st.sampled_from(["plus", "minus", "times"]))
def test_a_sum_names_its_result_and_never_an_operand_alone(a, b, op):
    result = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    text = f"{a} {op} {b} is {result}."
    assert commits_to_answer(text, (str(result),))
    for operand in {a, b} - {result}:
        assert not commits_to_answer(text, (str(operand),))


def test_an_answer_in_number_words_names_a_reference_in_digits_and_the_other_way_round():
    assert commits_to_answer("Sixty plus forty equals one hundred.", ("100",))
    assert commits_to_answer("It is 100.", ("one hundred",))
    assert not commits_to_answer("One hundred and one.", ("100",))


@pytest.mark.parametrize(("answer", "named", "not_named"), [
    ("closed", {"closed", "close", "closes", "closing"}, {"closer", "closely", "open"}),
    ("sell", {"sell", "sells", "selling"}, {"sold", "seller"}),
    ("stop", {"stopped", "stopping", "stops"}, {"stopper"}),
    ("carry", {"carries", "carried", "carrying"}, {"carrier"}),
    ("seed", {"seeds", "seeded"}, {"see", "sees"}),
    ("red", {"red", "reds"}, {"r", "re", "ring"}),
])
def test_a_one_word_answer_names_its_regular_inflections_only(answer, named, not_named):
    forms = inflections(answer)
    assert named <= forms and not not_named & forms


def test_numbers_and_short_words_are_not_inflected():
    assert inflections("33") == {"33"} and inflections("no") == {"no"}


@pytest.mark.parametrize("text", [".", "- - -", "=====", "?!", "...", "-\n-\n-", "  ", "", "()", "🙂"])
def test_text_without_a_letter_or_digit_has_no_content(text):
    assert not has_content(text)


@pytest.mark.parametrize("text", ["4", "Paris.", "Москва", "東京", "- a"])
def test_a_letter_or_digit_in_any_script_is_content(text):
    assert has_content(text)


def test_the_claim_of_a_yes_no_question_is_its_content_words():
    assert question_claim("Answer yes or no: Are bats mammals?") == {"bat", "mammal"}
    assert question_claim("Answer yes or no: Do cats lay eggs?") == {"cat", "lay", "egg"}
    assert question_claim("Is the Earth round? Answer with yes or no.") >= {"earth", "round"}


@pytest.mark.parametrize(("text", "expected"), [
    ("Bats are mammals.", "yes"), ("Bats are flying mammals.", "yes"), ("Bats are mammals, not birds.", "yes"),
    ("Bats are not mammals.", "no"), ("Bats are birds.", None), ("The answer is yes.", "yes"), ("The answer is no.", "no"),
    ("I'd say yes.", "yes"), ("The answer is yes or no.", None),
])
def test_a_yes_no_answer_is_read_from_a_statement_of_the_claim_or_of_the_answer(text, expected):
    assert yes_no_answer(text, "Answer yes or no: Are bats mammals?") == expected


def test_without_the_question_a_statement_is_not_read_as_yes():
    assert yes_no_answer("Bats are mammals.") is None


@pytest.mark.parametrize(("text", "items"), [
    ("Mars and Jupiter are two planets.", 2), ("Mars, Venus and Earth are planets.", 3), ("Mars and Jupiter.", 2),
    ("The Earth is round and the Moon is grey.", 0), ("Mars is a planet and Jupiter is too.", 0),
])
def test_a_series_before_its_predicate_counts_its_members_and_clauses_count_nothing(text, items):
    assert count_items(text) == items
