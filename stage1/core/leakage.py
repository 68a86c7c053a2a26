"""The leakage gate: no held-out evaluation instruction may appear in SFT or DPO training data.

It fails closed. A leak raises ``GateError`` listing every offender; a missing or empty evaluation
file is an error too, never a silent pass (a gate without its evidence proves nothing).

Two ways an evaluation instruction "appears" in a training instruction, both on
``text_keys.dedup_key`` text (case, whitespace and punctuation ignored; the symbols that change
meaning kept, so "What is C#?" is not a copy of "What is C?" and "-5" is not "5"):

- **exact**: the normalised texts are equal;
- **near**: most of the evaluation instruction's word n-grams occur in the training instruction.
  The measure is containment, ``|E ∩ T| / |E|`` over word ``ngram``-grams, and a pair at or above
  ``threshold`` (inclusive) is a leak. Containment rather than Jaccard, because an evaluation item
  copied into training with words added ("... in one word") is still a leak, while a training
  instruction that merely shares a template with an item ("capital of Spain" vs "capital of France":
  3 of 4 trigrams) is not. An evaluation instruction shorter than ``ngram`` words leaks when its
  words occur consecutively in a training instruction.

The core (``find_leaks``) is pure; ``read_eval_instructions`` and ``leakage_gate`` are the shell.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stage1.core.errors import ConfigError, GateError
from stage1.core.text_keys import dedup_key, word_ngrams

MAX_LISTED_OFFENDERS = 20


@dataclass(frozen=True)
class LeakageSettings:
    """How near is too near."""

    ngram: int = 3  # words per n-gram when comparing instructions
    threshold: float = 0.8  # share of the eval instruction's n-grams found in a training instruction (inclusive)

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ConfigError(f"must be at least 1, got {self.ngram}", field="leakage.ngram")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.threshold}", field="leakage.threshold")


@dataclass(frozen=True)
class Leak:
    """One evaluation instruction found in one training set."""

    eval_id: str
    eval_instruction: str
    training_set: str
    train_id: str
    train_instruction: str
    match: str  # "exact" or "near"
    similarity: float

    def describe(self) -> str:
        return (
            f"eval {self.eval_id!r} ({self.eval_instruction!r}) ~ {self.training_set} {self.train_id!r} "
            f"({self.train_instruction!r}): {self.match}, containment {self.similarity:.2f}"
        )


class _EvalIndex:
    """Evaluation instructions indexed by normalised text and by n-gram (the evaluation set is small)."""

    def __init__(self, items: Sequence[tuple[str, str]], ngram: int, threshold: float):
        self.items = list(items)
        self.ngram = ngram
        self.threshold = threshold
        self.by_key: dict[str, list[int]] = defaultdict(list)
        self.by_gram: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.gram_counts: list[int] = []
        self.short: list[tuple[int, str]] = []  # (index, " key ") for items with fewer than ngram words
        for index, (_, instruction) in enumerate(self.items):
            key = dedup_key(instruction)
            self.by_key[key].append(index)
            grams = word_ngrams(key.split(), ngram)
            self.gram_counts.append(len(grams))
            for gram in grams:
                self.by_gram[gram].append(index)
            if not grams and key:
                self.short.append((index, f" {key} "))

    def matches(self, key: str) -> list[tuple[int, str, float]]:
        """(eval index, match kind, containment) for every evaluation item the normalised instruction leaks."""
        found: dict[int, tuple[str, float]] = {index: ("exact", 1.0) for index in self.by_key.get(key, ())}
        shared: dict[int, int] = defaultdict(int)
        for gram in word_ngrams(key.split(), self.ngram):
            for index in self.by_gram.get(gram, ()):
                shared[index] += 1
        for index, count in shared.items():
            containment = count / self.gram_counts[index]
            if index not in found and containment >= self.threshold:
                found[index] = ("near", containment)
        padded = f" {key} "
        for index, needle in self.short:
            if index not in found and needle in padded:
                found[index] = ("near", 1.0)
        return [(index, kind, value) for index, (kind, value) in sorted(found.items())]


def find_leaks(
    eval_items: Sequence[tuple[str, str]],
    training_sets: Mapping[str, Iterable[tuple[str, str]]],
    settings: LeakageSettings = LeakageSettings(),
) -> list[Leak]:
    """Every (evaluation item, training instruction) pair that counts as a leak.

    Args:
        eval_items: ``(id, instruction)`` of the held-out evaluation items.
        training_sets: name → ``(id, instruction)`` rows of one training set (SFT train, DPO pairs).

    Each distinct normalised training instruction is compared once per set; the first row that
    carries it is reported.
    """
    index = _EvalIndex(eval_items, settings.ngram, settings.threshold)
    leaks: list[Leak] = []
    matched: dict[str, list[tuple[int, str, float]]] = {}  # shared by the sets: pairs repeat SFT instructions
    for name, rows in sorted(training_sets.items()):
        seen: set[str] = set()
        for train_id, instruction in rows:
            key = dedup_key(instruction)
            if key in seen:
                continue
            seen.add(key)
            if key not in matched:
                matched[key] = index.matches(key)
            for eval_index, kind, similarity in matched[key]:
                eval_id, eval_instruction = index.items[eval_index]
                leaks.append(Leak(eval_id, eval_instruction, name, str(train_id), instruction, kind, similarity))
    return leaks


def leak_report(leaks: Sequence[Leak], limit: int = MAX_LISTED_OFFENDERS) -> str:
    """A readable list of offenders, the first ``limit`` of them."""
    lines = [leak.describe() for leak in leaks[:limit]]
    if len(leaks) > limit:
        lines.append(f"... and {len(leaks) - limit} more")
    return "\n  ".join(lines)


def gate_leaks(
    eval_items: Sequence[tuple[str, str]],
    training_sets: Mapping[str, Sequence[tuple[str, str]]],
    settings: LeakageSettings = LeakageSettings(),
    *,
    source: str,
) -> dict[str, Any]:
    """The gate itself: every ``(id, instruction)`` of the evaluation items against every training
    set; a summary for the manifest when nothing leaks.

    Args:
        source: where the evaluation items came from, for the message and the summary.

    Raises:
        GateError: any leak (all offenders listed), or no evaluation items at all.
    """
    if not eval_items:
        raise GateError(f"{source}: no evaluation items; the leakage gate has nothing to check against")
    leaks = find_leaks(eval_items, training_sets, settings)
    if leaks:
        raise GateError(
            f"{len(leaks)} held-out evaluation instruction(s) appear in training data "
            f"(checked against {source}):\n  {leak_report(leaks)}\n"
            "remove these rows from the training data, or these items from the evaluation set"
        )
    return {
        "eval_items_path": str(source),
        "eval_items": len(eval_items),
        "training_rows": {name: len(rows) for name, rows in sorted(training_sets.items())},
        "ngram": settings.ngram,
        "threshold": settings.threshold,
        "leaks": 0,
    }
