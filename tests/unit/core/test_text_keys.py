"""``dedup_key``: case, whitespace and punctuation ignored, but not the symbols that change what a
token means (C# is not C, -5 is not 5, 4.5 is not 4 5), wherever the key is used: de-duplication,
the per-instruction cap, split groups and the leakage gate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.leakage import find_leaks
from stage1.core.splits import split_by_instruction
from stage1.core.text_keys import contains_words, dedup_key
from stage1.sft_data.filters import DROP_CAP, DROP_DUPLICATE, Candidate, filter_candidates


@pytest.mark.parametrize(
    "first, second",
    [
        ("What is C#?", "What is C?"),
        ("What is F#?", "What is F?"),
        ("What is C++?", "What is C?"),
        ("What is C#?", "What is C++?"),
        ("What is -5 plus 3?", "What is 5 plus 3?"),
        ("What is \u22125 plus 3?", "What is 5 plus 3?"),  # U+2212 MINUS SIGN
        ("Round 4.5 down.", "Round 4 5 down."),
        ("Round 4.5 down.", "Round 45 down."),
    ],
)
def test_symbols_that_change_meaning_make_different_keys(first, second):
    assert dedup_key(first) != dedup_key(second)


@pytest.mark.parametrize(
    "first, second",
    [
        ("what is c#", "What is C#?"),
        ("WHAT IS C++ ?", "what is c++"),
        ("Add -5 and 3.", "add  -5 and 3"),
        ("What is 4.5 plus 1?", "what is 4.5 plus 1"),
        ("Ｃ＃", "c#"),  # fullwidth forms fold through NFKC
        ("\u00c9t\u00e9 -5\u00b0", "E\u0301te\u0301 -5\u00b0"),  # non-ASCII path: composed and decomposed accents
    ],
)
def test_case_spacing_and_punctuation_still_fold_with_the_symbols_kept(first, second):
    assert dedup_key(first) == dedup_key(second)


def test_hyphens_sentence_points_and_bare_hashes_are_still_punctuation():
    assert dedup_key("well-known 3-5 items.") == "well known 3 5 items"
    assert dedup_key("5 - 3") == dedup_key("5 3")
    assert dedup_key("# of items: 5.") == "of items 5"
    assert dedup_key("Version 2. Then 3.") == "version 2 then 3"
    assert dedup_key("C#, C++ and -5 or 4.5.") == "c\u266f c\u2295\u2295 and \u207b5 or 4\u00b75"


def test_contains_words_does_not_find_c_sharp_in_c_or_five_in_minus_five():
    assert not contains_words("I like C", "C#")
    assert not contains_words("I like C#", "C")
    assert not contains_words("I like C++", "C")
    assert not contains_words("It is -5 degrees.", "5 degrees")
    assert contains_words("I like C# a lot.", "c#")
    assert contains_words("It is -5 degrees.", "-5 degrees")


def _candidate(i, instruction, response):
    return Candidate(id=str(i), instruction=instruction, category="c", response=response, source="model")


def test_filters_keep_c_sharp_and_c_apart():
    rows = [_candidate(1, "What is C#?", "A language."), _candidate(2, "What is C?", "A language.")]
    result = filter_candidates(rows, max_per_instruction=1)
    assert [e.id for e in result.kept] == ["1", "2"]
    assert result.counts()["dropped"][DROP_DUPLICATE] == 0 and result.counts()["dropped"][DROP_CAP] == 0


def test_splits_group_minus_five_apart_from_five():
    rows = [f"What is {sign}{n} plus 3?" for n in range(10) for sign in ("", "-")]
    train, heldout = split_by_instruction(rows, lambda r: r, 0.5, 0)
    assert len(train) == len(heldout) == 10, "20 distinct groups, half held out"


def test_leakage_does_not_confuse_c_sharp_with_c():
    training = {"sft_train": [("t1", "Is C fast?"), ("t2", "Explain C memory management in detail.")]}
    assert find_leaks([("e1", "Is C# fast?"), ("e2", "Explain C# memory management in detail.")], training) == []
    assert len(find_leaks([("e1", "Is C# fast?")], {"sft_train": [("t1", "is c# fast")]})) == 1


kept_symbols = st.text(alphabet="aC5 .-#+\u2212\u00b7\u00e9,?", max_size=20)


@given(kept_symbols)
def test_dedup_key_is_idempotent(text):
    """A key is its own key: marks survive normalising again, so keys can be compared with keys."""
    assert dedup_key(dedup_key(text)) == dedup_key(text)


@pytest.mark.parametrize("text", ["C#, C++ and -5 or 4.5.", "F# x-5 \u22123 well-known", "Is 3.14 > -2.5?"])
def test_the_marks_are_the_ones_evaluation_matching_uses(text):
    """The data keys and ``criteria.normalise_for_matching`` agree on what a kept symbol becomes."""
    from stage1.core.criteria import normalise_for_matching

    assert dedup_key(text).replace(">", "").split() == normalise_for_matching(text).split()
