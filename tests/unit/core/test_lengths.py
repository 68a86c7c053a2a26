"""Lengths in words: what counts as a word, when two responses are length-matched, and how much
length alone tells a chosen from its rejected."""

from __future__ import annotations

import pytest

from stage1.core.lengths import (
    length_by_kind,
    length_matched,
    length_signal,
    mean_median,
    response_lengths,
    word_count,
)


def test_words_are_whitespace_separated_and_a_final_end_line_is_not_one():
    assert word_count(" Paris is the capital.\nEND") == 4
    assert word_count("Paris is\tthe  capital.") == 4
    assert word_count("Paris END") == 2  # END on the same line is a word of the answer
    assert word_count("END\nParis") == 2  # only a final END line is left out
    assert word_count("Paris\nEND\nEND") == 2  # and only one of them
    assert word_count("\nEND") == 0
    assert word_count("") == 0


def test_mean_and_median_of_nothing_are_none():
    assert mean_median([]) == {"mean": None, "median": None}
    assert mean_median([1, 2, 9]) == {"mean": 4.0, "median": 2.0}
    median = mean_median([1, 4])["median"]
    assert median == 2.5 and isinstance(median, float)


def test_tokens_are_reported_only_when_every_response_counted_them():
    assert response_lengths([3, 5], [10, 20]) == {
        "responses": 2, "words": {"mean": 4.0, "median": 4.0}, "tokens": {"mean": 15.0, "median": 15.0},
    }
    assert response_lengths([3, 5], [10, None])["tokens"] == {"mean": None, "median": None}
    assert response_lengths([], []) == {
        "responses": 0, "words": {"mean": None, "median": None}, "tokens": {"mean": None, "median": None},
    }


@pytest.mark.parametrize(("before", "after", "matched"), [
    (1, 3, True),  # 2 words apart: within MATCH_WORDS
    (1, 4, False),  # 3 apart, and 3 > 0.2 * 4
    (4, 1, False),  # the order does not matter
    (20, 24, True),  # 4 apart, 0.2 * 24 = 4.8
    (20, 25, True),  # 5 apart, exactly 0.2 * 25: at the ratio is within it
    (20, 26, False),  # 6 apart, 0.2 * 26 = 5.2
    (26, 20, False),
    (0, 2, True),
    (0, 3, False),
])
def test_two_responses_are_length_matched_within_2_words_or_a_fifth_of_the_longer(before, after, matched):
    assert length_matched(before, after) is matched


def test_the_length_signal_is_the_accuracy_of_guessing_the_longer_one_is_rejected():
    # rejected longer in 2 pairs, shorter in 1, a tie in 1: (2 + 1/2) / 4
    signal = length_signal([(3, 5), (3, 9), (6, 2), (4, 4)])
    assert signal == {
        "pairs": 4, "rejected_longer": 0.5, "equal": 0.25, "longer_score": 0.625,
        "median_chosen_words": 3.5, "median_rejected_words": 4.5,
    }
    assert isinstance(signal["median_chosen_words"], float)
    assert length_signal(iter([(1, 2)]))["longer_score"] == 1.0  # any iterable, read once
    assert length_signal([(2, 1)])["longer_score"] == 0.0


def test_no_pairs_give_no_signal():
    assert length_signal([]) == {
        "pairs": 0, "rejected_longer": None, "equal": None, "longer_score": None,
        "median_chosen_words": None, "median_rejected_words": None,
    }


def test_length_by_kind_counts_words_per_kind_in_kind_order():
    pairs = [
        ("verbose_vague", " Paris.\nEND", " It might be Paris, or perhaps not.\nEND"),
        ("factually_incorrect", " Paris.\nEND", " Rome.\nEND"),
        ("verbose_vague", " Rome is old.\nEND", " Rome.\nEND"),
    ]
    by_kind = length_by_kind(pairs)
    assert list(by_kind) == ["factually_incorrect", "verbose_vague"]
    assert by_kind["factually_incorrect"] == length_signal([(1, 1)])
    assert by_kind["verbose_vague"] == length_signal([(1, 7), (3, 1)])
    assert length_by_kind([]) == {}
