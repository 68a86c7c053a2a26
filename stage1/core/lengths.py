"""Response lengths: per variant, per negative kind, and the length-matched items of a comparison.

A model can learn length instead of content: rule-made rejecteds differ in length from chosens
(a vague answer is longer, a truncation shorter), and a criterion can favour short or long
answers. So lengths are reported next to every rate and every pair set.

One unit per question, named wherever it is shown: **words** (whitespace-separated, the ``END``
line left out) everywhere a length is compared, because every stage can count them without a
tokenizer; **tokens** only where the generator counted them (``EvalResponse.num_tokens``).

Pure: strings and numbers in, JSON-ready dicts out.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from stage1.core.format import END_MARKER

#: Two responses are length-matched when their word counts differ by at most this many words, or
#: by at most ``MATCH_RATIO`` of the longer one (short answers: "Paris." vs "It is Paris." match).
MATCH_WORDS = 2
MATCH_RATIO = 0.2


_END_LINE = "\n" + END_MARKER


def word_count(text: str) -> int:
    """Whitespace-separated words, a final ``END`` line not counted (completions carry one)."""
    return len(text.removesuffix(_END_LINE).split())


def mean_median(values: Sequence[float]) -> dict[str, float | None]:
    """``{"mean", "median"}`` of the values; None for both when there are none."""
    if not values:
        return {"mean": None, "median": None}
    return {"mean": statistics.fmean(values), "median": float(statistics.median(values))}


def response_lengths(words: Sequence[int], tokens: Sequence[int | None]) -> dict[str, Any]:
    """One variant's lengths: mean and median words, and tokens where every response counted them."""
    known = [t for t in tokens if t is not None]
    return {
        "responses": len(words),
        "words": mean_median(words),
        "tokens": mean_median(known) if len(known) == len(tokens) else {"mean": None, "median": None},
    }


def length_matched(words_before: int, words_after: int) -> bool:
    """Whether two responses are close enough in length that length cannot explain a verdict change."""
    gap = abs(words_before - words_after)
    return gap <= MATCH_WORDS or gap <= MATCH_RATIO * max(words_before, words_after)


def length_signal(pairs: Iterable[tuple[int, int]]) -> dict[str, Any]:
    """How much length alone tells chosen from rejected, over ``(chosen_words, rejected_words)`` pairs.

    ``rejected_longer`` is the share of pairs whose rejected has more words than its chosen, and
    ``equal`` the share of ties; ``longer_score`` is ``rejected_longer + equal / 2``, the accuracy
    of guessing "the longer one is rejected" (ties a coin flip): 0.5 means length tells nothing,
    1.0 or 0.0 that it tells everything.
    """
    values = list(pairs)
    n = len(values)
    longer = sum(1 for chosen, rejected in values if rejected > chosen)
    equal = sum(1 for chosen, rejected in values if rejected == chosen)
    return {
        "pairs": n,
        "rejected_longer": longer / n if n else None,
        "equal": equal / n if n else None,
        "longer_score": (longer + equal / 2) / n if n else None,
        "median_chosen_words": float(statistics.median(c for c, _ in values)) if n else None,
        "median_rejected_words": float(statistics.median(r for _, r in values)) if n else None,
    }


def length_by_kind(pairs: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """``length_signal`` per negative kind over ``(kind, chosen, rejected)`` texts, kinds sorted."""
    by_kind: dict[str, list[tuple[int, int]]] = defaultdict(list)
    chosen_words: dict[str, int] = {}  # an example's chosen is in up to five pairs
    for kind, chosen, rejected in pairs:
        if chosen not in chosen_words:
            chosen_words[chosen] = word_count(chosen)
        by_kind[kind].append((chosen_words[chosen], word_count(rejected)))
    return {kind: length_signal(values) for kind, values in sorted(by_kind.items())}
