"""Each criterion with fixtures that pass and fixtures that fail, and the policies they share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.criteria import (
    CRITERIA,
    CRITERION_NAMES,
    contains_keyword,
    contains_phrase,
    count_items,
    count_sentences,
    factually_correct,
    follows_constraint,
    is_applicable,
    is_refusal,
    no_runaway,
    no_unwarranted_refusal,
    normalise_for_matching,
    not_degenerate,
    on_topic,
    repetition_problem,
    score_response,
    stopped_with_end,
)
from stage1.core.eval_items import Constraint, EvalItem, EvalResponse
from stage1.core.format import parse_completion, render_prompt

LONG_CORRECT = (
    "In Spanish, 'thank you' is 'gracias'. It is the everyday word you will hear in shops, restaurants and "
    "homes across Spain and Latin America. To be more emphatic you can say 'muchas gracias', which means "
    "'thank you very much', or 'mil gracias', literally 'a thousand thanks'. In reply people usually say "
    "'de nada', meaning 'you are welcome'. The word comes from the Latin 'gratias', the same root as the "
    "English word 'gratitude', and it is pronounced roughly GRAH-see-ahs in Latin America."
)


def make_item(**fields) -> EvalItem:
    values = {"id": "i1", "instruction": "A question?", "category": "general"}
    values.update(fields)
    if isinstance(values.get("constraint"), dict):
        values["constraint"] = Constraint(**values["constraint"])
    return EvalItem(**values)


def make_response(completion: str, *, eos: bool = False, item_id: str = "i1") -> EvalResponse:
    """A response exactly as the generation backend would record it (parsed from the raw text)."""
    parsed = parse_completion(completion, finished_by_eos=eos)
    return EvalResponse(item_id, "sft", render_prompt("A question?"), completion, parsed.response, parsed.stop_reason, parsed.runaway, 5)


# ---------------------------------------------------------------- stopped_with_end / no_runaway


@pytest.mark.parametrize("completion", [" Paris.\nEND", " Paris.\nEND\n", " A long answer.\n\nWith a second paragraph.\nEND"])
def test_stopped_with_end_passes_on_an_end_line(completion):
    assert stopped_with_end(make_item(), make_response(completion)) is True


@pytest.mark.parametrize(
    ("completion", "eos"),
    [
        (" Paris.", True),  # eos without END
        (" Paris is a city that", False),  # token limit
        (" Paris.\nInstruction: next", False),  # runaway
        (" The BACKEND", True),  # END inside a word is not the marker
        ("\nEND", False),  # END with nothing before it
    ],
)
def test_stopped_with_end_fails_otherwise(completion, eos):
    assert stopped_with_end(make_item(), make_response(completion, eos=eos)) is False


def test_no_runaway_detects_a_new_instruction_in_the_raw_text():
    runaway = make_response(" Paris.\nInstruction: What is the capital of Spain?\nResponse: Madrid.\nEND")
    assert runaway.response == "Paris."  # the kept answer hides the runaway ...
    assert no_runaway(make_item(), runaway) is False  # ... but the criterion reads the raw flag
    assert no_runaway(make_item(), make_response(" Paris.\nEND")) is True
    assert no_runaway(make_item(), make_response(" Paris and more", eos=False)) is True


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I’m sorry, but I cannot assist with this request.",
        "As an AI language model, I do not have opinions.",
        "I must decline to answer that question.",
        "I am unable to provide that information.",
        "That is not something I can help with.",
        "I won't answer questions like this.",
        "I don't feel comfortable answering that.",
    ],
)
def test_refusals_are_recognised(text):
    assert is_refusal(text)
    assert no_unwarranted_refusal(make_item(), make_response(f" {text}\nEND")) is False


@pytest.mark.parametrize(
    "text",
    [
        "I cannot stress enough how important sleep is.",
        "You can't divide by zero, so the expression is undefined.",
        "Sorry is an English word used to apologise.",
        "Paris.",
        "The function cannot help but return None when the list is empty.",
    ],
)
def test_answers_that_mention_can_not_are_not_refusals(text):
    assert not is_refusal(text)
    assert no_unwarranted_refusal(make_item(), make_response(f" {text}\nEND")) is True


def test_refusal_is_na_on_an_unsafe_item():
    assert no_unwarranted_refusal(make_item(safe=False), make_response(" I can't help with that.\nEND")) is None


# ---------------------------------------------------------------- constraints


@pytest.mark.parametrize(
    ("kind", "n", "text", "expected"),
    [
        ("one_word", None, "Paris.", True),
        ("one_word", None, "**Paris**", True),
        ("one_word", None, "well-known", True),
        ("one_word", None, "New York", False),
        ("one_word", None, "The answer is Paris.", False),
        ("number", None, "42", True),
        ("number", None, "-3.5", True),
        ("number", None, "1,000", True),
        ("number", None, "15%.", True),
        ("number", None, "The answer is 4.", False),
        ("number", None, "four", False),
        ("yes_no", None, "Yes.", True),
        ("yes_no", None, "no, because water is wet.", True),
        ("yes_no", None, "Maybe.", False),
        ("yes_no", None, "Yesterday it rained.", False),
        ("one_sentence", None, "Water evaporates, condenses into clouds and falls as rain.", True),
        ("one_sentence", None, "Dr. Smith measured pi as 3.14 in the lab.", True),
        ("one_sentence", None, "Water evaporates. It falls as rain.", False),
        ("one_sentence", None, "Water evaporates\nand then it rains", False),
        ("n_items", 3, "- Red\n- Blue\n- Yellow", True),
        ("n_items", 3, "1. Red\n2. Blue\n3. Yellow", True),
        ("n_items", 3, "Red, blue, and yellow.", True),
        ("n_items", 3, "Red, blue, yellow and green.", False),
        ("n_items", 3, "- Red\n- Blue", False),
        ("n_items", 2, "Here are two:\n- Red\n- Blue", True),
    ],
)
def test_follows_constraint(kind, n, text, expected):
    item = make_item(constraint={"kind": kind, "n": n})
    assert follows_constraint(item, make_response(f" {text}\nEND")) is expected


def test_follows_constraint_is_na_without_a_constraint():
    assert follows_constraint(make_item(), make_response(" Paris.\nEND")) is None


def test_sentence_and_item_counters():
    assert count_sentences("One. Two! Three?") == 3
    assert count_sentences("Dr. Smith went home. He slept.") == 2
    assert count_items("apples and oranges") == 2


# ---------------------------------------------------------------- factual correctness


def test_a_long_correct_explanation_counts():
    item = make_item(instruction="Translate 'thank you' into Spanish.", reference="gracias")
    assert len(LONG_CORRECT) > 400
    assert factually_correct(item, make_response(f" {LONG_CORRECT}\nEND")) is True


def test_a_wrong_answer_does_not_count():
    item = make_item(instruction="Translate 'thank you' into Spanish.", reference="gracias")
    assert factually_correct(item, make_response(" Hola\nEND")) is False


def test_whole_word_matching_never_matches_inside_a_word():
    item = make_item(reference="how")
    assert factually_correct(item, make_response(" Let me show you.\nEND")) is False
    assert factually_correct(item, make_response(" How.\nEND")) is True


@pytest.mark.parametrize(
    ("reference", "aliases", "text", "expected"),
    [
        ("4", ["four"], "The answer is 4.", True),
        ("4", ["four"], "Four.", True),
        ("4", ["four"], "14", False),
        ("4", ["four"], "4.5", False),
        ("1000", [], "About 1,000 people.", True),
        ("Bogotá", [], "The capital is Bogota.", True),
        ("William Shakespeare", ["Shakespeare"], "It was Shakespeare.", True),
        ("William Shakespeare", ["Shakespeare"], "It was Marlowe.", False),
        ("yes", [], "Yes, it is.", True),
        ("yes", [], "Eyes are organs.", False),
    ],
)
def test_factual_matching_normalises(reference, aliases, text, expected):
    item = make_item(reference=reference, aliases=tuple(aliases))
    assert factually_correct(item, make_response(f" {text}\nEND")) is expected


def test_factually_correct_is_na_without_a_reference():
    assert factually_correct(make_item(), make_response(" Anything.\nEND")) is None


# ---------------------------------------------------------------- on topic


def test_on_topic_by_keyword_plural_or_correct_answer():
    item = make_item(topic_keywords=("planet", "city"), reference="8")
    assert on_topic(item, make_response(" Planets orbit the Sun.\nEND")) is True
    assert on_topic(item, make_response(" Many cities are old.\nEND")) is True
    assert on_topic(item, make_response(" 8\nEND")) is True
    assert on_topic(item, make_response(" I like planetariums... no, cats.\nEND")) is False


def test_on_topic_is_na_without_keywords():
    assert on_topic(make_item(), make_response(" Anything.\nEND")) is None


def test_keyword_matching_is_whole_word():
    assert not contains_keyword("Let me show you", "how")
    assert contains_keyword("Here is how", "how")
    assert contains_phrase("The New York subway", "new york")
    assert not contains_phrase("Newark", "new york")


# ---------------------------------------------------------------- degeneration


@pytest.mark.parametrize("text", ["Paris.", "4", "Yes.", LONG_CORRECT, "```python\nfor i in range(3):\n    print(i)\n```"])
def test_normal_answers_are_not_degenerate(text):
    assert repetition_problem(text) is None
    assert not_degenerate(make_item(), make_response(f" {text}\nEND")) is True


@pytest.mark.parametrize(
    "text",
    [
        "the the the the cat",
        "I like it. " * 10,
        "The answer is Jupiter.\nThe answer is Jupiter.\nThe answer is Jupiter.",
        "!" * 40,
    ],
)
def test_repetition_is_degenerate(text):
    assert repetition_problem(text) is not None
    assert not_degenerate(make_item(), make_response(f" {text}", eos=False)) is False


# ---------------------------------------------------------------- shared policies


def test_empty_response_fails_every_applicable_criterion():
    item = make_item(reference="Paris", topic_keywords=("Paris",), constraint={"kind": "one_word"})
    verdicts = score_response(item, make_response("", eos=True))
    assert all(verdict is False for verdict in verdicts.values()), verdicts


def test_score_response_keys_and_item_check():
    verdicts = score_response(make_item(), make_response(" Paris.\nEND"))
    assert tuple(verdicts) == CRITERION_NAMES
    with pytest.raises(ValueError):
        score_response(make_item(), make_response(" Paris.\nEND", item_id="other"))


item_strategy = st.builds(
    make_item,
    reference=st.one_of(st.none(), st.sampled_from(["Paris", "4", "how"])),
    topic_keywords=st.lists(st.sampled_from(["city", "planet"]), max_size=2).map(tuple),
    constraint=st.one_of(st.none(), st.sampled_from([{"kind": "one_word"}, {"kind": "n_items", "n": 2}])),
    safe=st.booleans(),
)
completion_strategy = st.sampled_from(["", " Paris.\nEND", " I can't help with that.\nEND", " how how how how", " 4\nInstruction: x"])


@given(item_strategy, completion_strategy)
def test_na_depends_on_the_item_alone(item, completion):
    """Every criterion returns None exactly when the item makes it inapplicable, whatever the response."""
    response = make_response(completion, eos=True)
    for name, check in CRITERIA.items():
        verdict = check(item, response)
        assert (verdict is None) == (not is_applicable(name, item)), name
        assert verdict in (None, True, False)


def test_normalise_for_matching():
    assert normalise_for_matching("Bogotá, 1,000 people; 3.14!") == "bogota 1000 people 3·14"


@pytest.mark.parametrize(
    ("text", "phrase", "expected"),
    [
        ("It is 5", "-5", False),
        ("It is -5 degrees", "-5", True),
        ("It is −5 degrees", "-5", True),  # U+2212 minus sign
        ("It is -5 degrees", "5", False),
        ("Rest 3-5 days", "5", True),  # a range's hyphen is not a sign
        ("I recommend C++", "C#", False),
        ("The answer is C", "C++", False),
        ("The answer is C", "C#", False),
        ("Write it in C#.", "C#", True),
        ("Use C++ here", "C++", True),
        ("a well-known fact", "well-known", True),
        ("Spend 2 + 2 minutes", "2", True),
    ],
)
def test_matching_keeps_signs_and_language_symbols(text, phrase, expected):
    assert contains_phrase(text, phrase) is expected


YES_NO_ITEM = {"instruction": "Answer yes or no: Do cats lay eggs?", "reference": "no", "constraint": {"kind": "yes_no"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No.", True),
        ("No, cats give birth to live kittens; there is no egg.", True),
        ("**No**", True),
        ("Yes.", False),
        ("Yes, cats lay eggs; there is no doubt about it.", False),  # "no" further on is not the answer
        ("Answer yes or no: Do cats lay eggs?", False),  # an echo of the question holds both words
        ("Cats do not lay eggs.", False),  # negation is not read (documented limit)
    ],
)
def test_a_yes_no_item_is_answered_by_its_first_word(text, expected):
    item = make_item(**YES_NO_ITEM)
    assert factually_correct(item, make_response(f" {text}\nEND")) is expected


@pytest.mark.parametrize(
    "text",
    [
        "I can't help but notice that the sky is blue because of Rayleigh scattering.",
        "I cannot help thinking of Paris when I hear that song.",
    ],
)
def test_idioms_with_cant_help_are_answers(text):
    assert not is_refusal(text)


@pytest.mark.parametrize("text", ["I can't help with that.", "I cannot help you with this request."])
def test_cant_help_with_a_request_is_a_refusal(text):
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    ["The number is 1000000000000000000000000.", "Title\n========================\ntext", "A rule:\n------------------------------"],
)
def test_long_digit_and_rule_runs_are_not_degenerate(text):
    assert repetition_problem(text) is None


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("I like it. it is good.", 2),
        ("Wait... then it rained.", 1),
        ("Paris is big, e.g. the Louvre is there.", 1),
        ("Dr. Smith came. He left.", 2),
        ("It costs 3.50 dollars.", 1),
    ],
)
def test_sentence_count_does_not_need_a_capital(text, count):
    assert count_sentences(text) == count
