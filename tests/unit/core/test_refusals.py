"""The refusal detector's vocabulary, one phrase at a time.

Each declining modal, each declined object and each standalone phrase of ``stage1.core.refusals`` is
what makes its sentence here a refusal: the sentence is built so that no other phrase of the detector
reads it, so a phrase dropped from a list (or misspelt) turns that sentence into an answer.
"""

from __future__ import annotations

import pytest

from stage1.core import refusals
from stage1.core.refusals import (
    REFUSAL_MODALS,
    REFUSAL_OBJECTS,
    REFUSAL_STANDALONE,
    REFUSAL_SUBJECTS,
    fold_for_refusal,
    is_refusal,
)


def _deciding_patterns(text: str) -> list[str]:
    """The detector's patterns that read ``text`` (the first is the subject-modal-object pattern)."""
    folded = fold_for_refusal(text)
    return [pattern.pattern for pattern in refusals._REFUSAL_PATTERNS if pattern.search(folded)]


def _with_modal(modal: str) -> str:
    """'We cannot help with that.': 'I' for the contracted and 'am' modals ("I'm unable to", "I am not
    going to"), 'We' otherwise, since 'I must decline ...' and 'I refuse ...' are standalone phrases too."""
    if modal.startswith("'"):
        subject = "I"
    elif modal.startswith("am "):
        subject = "I "
    else:
        subject = "We "
    return f"{subject}{modal} help with that."


@pytest.mark.parametrize("modal", sorted(REFUSAL_MODALS))
def test_each_declining_modal_between_a_subject_and_a_request_verb_declines(modal):
    sentence = _with_modal(modal)
    assert is_refusal(sentence), sentence
    assert _deciding_patterns(sentence) == [refusals._REFUSAL_PATTERNS[0].pattern], "the modal alone declines"


@pytest.mark.parametrize("subject", sorted(REFUSAL_SUBJECTS))
def test_each_first_person_subject_declines_and_another_person_does_not(subject):
    assert is_refusal(f"{subject.capitalize()} cannot help with that.")
    assert not is_refusal("They cannot help with that.")  # a report about others, not a refusal
    assert not is_refusal("You can't help with that.")


@pytest.mark.parametrize(
    "text",
    ["I can help with that.", "We help with that every day.", "I will help with that."],
)
def test_a_request_verb_without_a_declining_modal_is_an_answer(text):
    assert not is_refusal(text)


#: One sentence per declined object: "I can't <object> ...", read by that object only.
OBJECT_SENTENCES = {
    "help": "I cannot help you.",
    "assist": "I can't assist you.",
    "answer": "I can't answer your question.",
    "provide": "I can't provide instructions for that.",
    "comply": "I cannot comply.",
    "complete": "I can't complete this task.",
    "fulfil": "I cannot fulfil this request.",
    "fulfill": "I cannot fulfill this request.",
    "share": "I can't share that information.",
    "give": "I can't give you that information.",
    "respond": "I won't respond to that.",
    "reply": "I won't reply to that.",
    "engage": "I won't engage with this.",
    "discuss": "I can't discuss that.",
    "support": "I cannot support this plan.",
    "do that": "I won't do that.",
    "do this": "I won't do this.",
    "do so": "I won't do so.",
    "create": "I can't create that image.",
    "write": "I can't write that essay.",
    "generate": "I can't generate that.",
    "offer": "I can't offer advice on this.",
    "produce": "I can't produce that content.",
    "go along": "I won't go along with this.",
    "go there": "I won't go there.",
    "participate": "I won't participate in this.",
    "talk about": "I'd rather not talk about that.",
    "explain": "I can't explain how to pick a lock.",
    "continue": "I can't continue this conversation.",
    "proceed": "I cannot proceed with this.",
    "disclose": "I can't disclose that.",
    "reveal": "I can't reveal my instructions.",
    "carry out": "I cannot carry out that task.",
    "be of help": "I can't be of help here.",
    "with that": "Sorry, I can't with that.",
    "with this": "Sorry, I can't with this.",
    "with your": "Sorry, I can't with your request.",
    "with the request": "Sorry, I can't with the request.",
    "with such": "Sorry, I can't with such questions.",
    "that": "Sorry, I can't that day.",
    "this": "Sorry, I can't this time.",
}


@pytest.mark.parametrize("declined", sorted(REFUSAL_OBJECTS))
def test_each_declined_object_after_a_declining_modal_declines(declined):
    sentence = OBJECT_SENTENCES[declined]  # a KeyError here: a new object needs its sentence
    assert is_refusal(sentence), sentence
    assert _deciding_patterns(sentence) == [refusals._REFUSAL_PATTERNS[0].pattern]


@pytest.mark.parametrize("text", ["I can't really help with that.", "I cannot simply answer that.", "We cannot currently help with that."])
def test_one_softening_adverb_may_stand_between_the_modal_and_the_request_verb(text):
    assert is_refusal(text)


#: One sentence per standalone phrase, in the order of REFUSAL_STANDALONE, read by that phrase only.
STANDALONE_SENTENCES = (
    "As an AI, I have no opinions.",
    "As a language model, I have no opinions.",
    "I'm just an AI.",
    "I have to pass on this one.",
    "I decline, with regret.",
    "I'm sorry, but I can't say.",
    "That's not something I can say.",
    "I don't feel comfortable with this.",
    "I'm not comfortable with this.",
    "We will not be answering questions on this.",
    "It is not appropriate for me to say.",
    "It wouldn't be appropriate for me to say.",
    "I'm not willing to do that.",
    "I won't.",
)


@pytest.mark.parametrize(
    ("pattern", "sentence"), list(zip(REFUSAL_STANDALONE, STANDALONE_SENTENCES, strict=True)), ids=STANDALONE_SENTENCES
)
def test_each_standalone_phrase_declines_on_its_own(pattern, sentence):
    assert is_refusal(sentence)
    assert _deciding_patterns(sentence) == [pattern]


def test_the_patterns_read_casefolded_text_with_straight_apostrophes_and_single_spaces():
    assert fold_for_refusal("I\u2019M  Sorry,\n\tBUT I can\u2018t") == "i'm sorry, but i can't"


@pytest.mark.parametrize("text", ["I am\nunable to help with that.", "As an\n AI, I have no opinions.", "I'm  just  an AI."])
def test_a_line_break_or_double_space_inside_a_phrase_does_not_hide_it(text):
    assert is_refusal(text)
