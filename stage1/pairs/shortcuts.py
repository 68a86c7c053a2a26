"""How well a reader that never looks at the content tells rejected from chosen: shortcut baselines.

A DPO model learns whatever separates the two sides most cheaply. If rejected responses are longer,
or open with words the chosen never use, the model can learn "shorter, and not starting with
these words" instead of "answer correctly". For each negative kind this module measures:

- ``length_rule``: the accuracy of the better of "the longer one is rejected" and "the shorter one
  is rejected" (ties a coin flip). It is fitted on the same pairs, so it is an upper bound.
- ``classifier``: a cross-validated naive Bayes classifier that sees only each response's first
  one, two and three words and its length (bucketed). Folds are instruction groups (no group in
  both the training and the test folds), assigned in a seeded order. A pair counts as separated
  when the rejected side scores above the chosen side (ties half), so 0.5 is chance.
- ``distinct_openings``: distinct three-word openings among the kind's rejected responses, as a
  share of them (1.0: every one opens differently).
- ``top_marker``: the commonest three-word opening of the kind's rejected responses that no chosen
  response of the set opens with, and its share of the kind's rejected.

Written by hand rather than with a machine-learning library: the project has none among its
dependencies, and naive Bayes over a few count tables is a few lines of pure Python.

Pure: strings and ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from stage1.core.format import END_MARKER
from stage1.core.lengths import length_signal
from stage1.core.text_keys import dedup_key

FOLDS = 5
SMOOTHING = 1.0  # Laplace smoothing of the feature counts
OPENING_WORDS = 3
#: The bounds the negatives are built to: a classifier at or under ``NEAR_CHANCE`` separates little
#: more than a coin; no marker opening over ``MAX_MARKER_SHARE``; at least ``MIN_DISTINCT_OPENINGS``.
NEAR_CHANCE = 0.65
MAX_MARKER_SHARE = 0.10
MIN_DISTINCT_OPENINGS = 0.30
_LENGTH_BUCKETS = (1, 2, 3, 4, 6, 8, 11, 15, 20, 30)
_END_LINE = "\n" + END_MARKER


def words_of(completion: str) -> list[str]:
    """The completion's words as the baselines see them: case, punctuation and the END line gone."""
    return dedup_key(completion.removesuffix(_END_LINE)).split()


def opening(completion: str, n: int = OPENING_WORDS) -> str:
    return " ".join(words_of(completion)[:n])


def features(completion: str) -> tuple[str, ...]:
    """First one, two and three words, and the length bucket: what a content-blind reader sees."""
    words = words_of(completion)
    length = len(completion.removesuffix(_END_LINE).split())
    bucket = next((i for i, bound in enumerate(_LENGTH_BUCKETS) if length <= bound), len(_LENGTH_BUCKETS))
    return (*(f"w{n}:" + " ".join(words[:n]) for n in (1, 2, 3) if len(words) >= n), f"len:{bucket}")


def _folds(groups: Sequence[str], seed: int) -> dict[str, int]:
    distinct = sorted(set(groups))
    random.Random(f"{seed}:shortcut-folds").shuffle(distinct)
    return {group: index % FOLDS for index, group in enumerate(distinct)}


def _train(samples: Iterable[tuple[tuple[str, ...], tuple[str, ...]]]) -> tuple[Counter[str], Counter[str], int]:
    rejected, chosen, n = Counter(), Counter(), 0
    for chosen_features, rejected_features in samples:
        chosen.update(chosen_features)
        rejected.update(rejected_features)
        n += 1
    return chosen, rejected, n


def _score(feats: tuple[str, ...], chosen: Counter[str], rejected: Counter[str], n: int) -> float:
    """Log-odds of "rejected" from the features present (one chosen and one rejected per pair: equal priors)."""
    return sum(math.log((rejected[f] + SMOOTHING) / (chosen[f] + SMOOTHING)) for f in feats)


def classifier_accuracy(pairs: Sequence[tuple[str, str, str]], seed: int = 0) -> float | None:
    """Cross-validated pair accuracy over ``(group, chosen, rejected)``; None with fewer than two groups."""
    fold_of = _folds([group for group, _, _ in pairs], seed)
    if len(set(fold_of.values())) < 2:
        return None
    cache: dict[str, tuple[str, ...]] = {}  # a chosen answer is on the chosen side of each of its pairs

    def featured_text(text: str) -> tuple[str, ...]:
        if text not in cache:
            cache[text] = features(text)
        return cache[text]

    featured = [(fold_of[group], featured_text(chosen), featured_text(rejected)) for group, chosen, rejected in pairs]
    score = 0.0
    for fold in range(FOLDS):
        test = [(c, r) for f, c, r in featured if f == fold]
        if not test:
            continue
        chosen, rejected, n = _train((c, r) for f, c, r in featured if f != fold)
        for chosen_features, rejected_features in test:
            gap = _score(rejected_features, chosen, rejected, n) - _score(chosen_features, chosen, rejected, n)
            score += 1.0 if gap > 1e-12 else 0.5 if abs(gap) <= 1e-12 else 0.0
    return score / len(pairs)


def _openings(rejected: Sequence[str], chosen_openings: set[str]) -> dict[str, Any]:
    counts = Counter(opening(text) for text in rejected)
    markers = [(n, text) for text, n in counts.items() if text not in chosen_openings]
    top = max(markers, key=lambda m: (m[0], m[1]), default=None)
    return {
        "distinct_openings": len(counts) / len(rejected),
        "top_marker": None if top is None else {"opening": top[1], "share": top[0] / len(rejected)},
    }


def shortcut_baselines(pairs: Iterable[tuple[str, str, str, str]], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per kind, over ``(kind, group, chosen, rejected)``: ``pairs``, ``length_rule``, ``classifier``,
    ``distinct_openings``, ``top_marker`` and ``near_chance`` (both baselines at or under
    ``NEAR_CHANCE``)."""
    by_kind: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for kind, group, chosen, rejected in pairs:
        by_kind[kind].append((group, chosen, rejected))
    chosen_openings = {opening(chosen) for chosen in {c for kind_pairs in by_kind.values() for _, c, _ in kind_pairs}}
    report: dict[str, dict[str, Any]] = {}
    for kind in sorted(by_kind):
        kind_pairs = by_kind[kind]
        lengths = [(len(c.removesuffix(_END_LINE).split()), len(r.removesuffix(_END_LINE).split())) for _, c, r in kind_pairs]
        longer = length_signal(lengths)["longer_score"]
        length_rule = max(longer, 1.0 - longer)
        classifier = classifier_accuracy(kind_pairs, seed)
        report[kind] = {
            "pairs": len(kind_pairs),
            "length_rule": length_rule,
            "classifier": classifier,
            **_openings([r for _, _, r in kind_pairs], chosen_openings),
            "near_chance": length_rule <= NEAR_CHANCE and (classifier is None or classifier <= NEAR_CHANCE),
        }
    return report
