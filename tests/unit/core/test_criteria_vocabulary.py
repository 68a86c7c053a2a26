"""The criteria's word lists one word at a time, and their length limits at the boundary.

Each word of a vocabulary in ``stage1.core.criteria`` (the yes, no and undecided words, the negators,
the clause words, the retraction openers) decides the verdict of a sentence built with it here, and
each limit (``NEGATION_WINDOW``, ``MAX_ITEM_WORDS``, ``MAX_CANDIDATE_WORDS``, ``MAX_RETRACTION_WORDS``)
is tested at exactly its value and one past it.
"""

from __future__ import annotations

import pytest

from stage1.core.criteria import (
    CLAUSE_WORDS,
    NEGATORS,
    NO_WORDS,
    RETRACTION_OPENERS,
    UNDECIDED,
    YES_WORDS,
    commits_to_answer,
    count_items,
    yes_no_answer,
)

# ---------------------------------------------------------------- yes/no answers


@pytest.mark.parametrize("word", sorted(YES_WORDS))
def test_each_yes_word_opening_an_answer_answers_yes(word):
    assert yes_no_answer(f"{word.capitalize()}, cats lay eggs.") == "yes"


#: One answer per no word, opening with it.
NO_SENTENCES = {
    "no": "No, they give birth to kittens.",
    "nope": "Nope, they give birth to kittens.",
    "nah": "Nah, they give birth to kittens.",
    "never": "Never, they give birth to kittens.",
    "not": "Not really, they give birth to kittens.",
}


@pytest.mark.parametrize("word", sorted(NO_WORDS))
def test_each_no_word_opening_an_answer_answers_no(word):
    assert yes_no_answer(NO_SENTENCES[word]) == "no"


#: One answer per negator, which opens with no yes or no word: the negator alone makes it a no.
NEGATOR_SENTENCES = {
    "not": "Cats do not lay eggs.",
    "no": "Cats lay no eggs.",
    "never": "Cats never lay eggs.",
    "neither": "Neither of them lays eggs.",
    "nor": "Nor do cats lay eggs.",
    "none": "None of them lay eggs.",
    "nothing": "Nothing like that happens.",
    "cannot": "Cats cannot lay eggs.",
}


@pytest.mark.parametrize("negator", sorted(NEGATORS))
def test_each_negator_in_the_first_sentence_answers_no(negator):
    assert yes_no_answer(NEGATOR_SENTENCES[negator]) == "no"


#: One answer per undecided phrase. Each would read as yes or no without it: it opens with a yes or
#: no word, or holds a negator ("Possibly not." is undecided, "Not." is no).
UNDECIDED_SENTENCES = {
    "maybe": "Yes, maybe.",
    "perhaps": "Yes, perhaps.",
    "possibly": "Possibly not.",
    "depends": "Not always; it depends.",
    "sometimes": "Sometimes, but not always.",
    "not sure": "I am not sure.",
    "unsure": "I'm unsure, but I think not.",
    "unclear": "It is unclear, but probably not.",
    "i do not know": "I don't know.",
    "no one knows": "No one knows.",
    "hard to say": "Hard to say, probably not.",
    "yes and no": "Yes and no.",
    "yes or no": "Yes or no, the evidence is mixed.",
    "no or yes": "No or yes, the evidence is mixed.",
}


@pytest.mark.parametrize("phrase", UNDECIDED)
def test_each_undecided_phrase_leaves_the_question_open(phrase):
    assert yes_no_answer(UNDECIDED_SENTENCES[phrase]) is None


# ---------------------------------------------------------------- negation window


def test_a_negator_up_to_three_words_before_the_answer_negates_it():
    assert commits_to_answer("It is not in fact Rome.", ("Rome",)) is False  # 'not' 3 words before
    assert commits_to_answer("Not only is it Rome, it is also the largest city in Italy.", ("Rome",)) is True  # 4


# ---------------------------------------------------------------- items and candidates


@pytest.mark.parametrize("word", sorted(CLAUSE_WORDS))
def test_a_part_holding_a_clause_word_is_a_clause_not_a_list_item(word):
    """'Red, blue and then green.' is prose: a line counts as a series only when every part is an item."""
    assert count_items(f"Red, blue and {word} green.") == 0
    assert count_items("Red, blue and green.") == 3


def test_an_inline_list_item_is_at_most_four_words():
    assert count_items("Red, blue and very dark sea green.") == 3  # 4 words: an item
    assert count_items("Red, blue and a very dark sea green.") == 0  # 5: a clause, so the line is prose


def test_a_series_left_open_is_not_a_list():
    """A part with no words ('…') is not an item."""
    assert count_items("Red, blue, …") == 0


def test_a_rival_of_up_to_three_words_is_a_candidate_and_hedges():
    assert commits_to_answer("Rome or New York City.", ("Rome",)) is False  # a 3-word rival: a hedge
    # Four words are more than a bare candidate: the part is read as a clause added to the answer.
    assert commits_to_answer("Rome, and the ancient Roman Forum.", ("Rome",)) is True


# ---------------------------------------------------------------- retractions


@pytest.mark.parametrize("opener", RETRACTION_OPENERS)
def test_each_retraction_opener_takes_back_the_answer_before_it(opener):
    assert commits_to_answer(f"Rome. {opener.capitalize()}, Milan.", ("Rome",)) is False


def test_a_later_sentence_without_a_retraction_opener_keeps_the_answer():
    assert commits_to_answer("Rome. Milan.", ("Rome",)) is True


@pytest.mark.parametrize(
    "sentence", ["No doubt about it.", "No question about it.", "No wonder it is famous.", "Sorry to be so brief."]
)
def test_openings_that_only_look_like_retractions_keep_the_answer(sentence):
    assert commits_to_answer(f"Rome. {sentence}", ("Rome",)) is True


def test_a_retraction_is_at_most_six_words():
    assert commits_to_answer("Rome. Actually, it is in fact Milan.", ("Rome",)) is False  # 6 words
    assert commits_to_answer("Rome. Actually, it is a very old city.", ("Rome",)) is True  # 7: a remark
