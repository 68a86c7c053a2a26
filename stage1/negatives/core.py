"""Negatives for a stream of SFT examples: planned by the mix, built by kind, checked to be worse.

Every negative passes the same checks before it is kept:

- its completion differs from the chosen completion after ``dedup_key`` normalisation;
- refusals, off-topic and vague answers do not contain the chosen answer's words;
- it adds no doubled period the chosen answer does not have (a surface cue, not a content one);
- it is not a second copy of a negative already made for the same example;
- a templated or borrowed string is used at most ``max_repeats`` times in the whole output.

A planned negative that fails ``attempts`` times, or whose kind does not apply (nothing factual
to change, no example of another category), is counted under ``not_applicable`` and skipped:
never replaced by a canned sentence.

State is bounded: the donor pool holds at most ``donor_pool_size`` answers per category and the
repeat counter only counts strings that can repeat (templates and donor answers), so memory does
not grow with the number of examples streamed through.

Pure: records, strings and ``random.Random``; same seed and inputs give the same output.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stage1.format import FormatError, render_completion
from stage1.negatives import format_violation as fv
from stage1.negatives import templates
from stage1.negatives.factual import falsify
from stage1.negatives.mix import plan_kinds
from stage1.negatives.settings import NegativeSettings
from stage1.records import NegativeRecord, SFTExample
from stage1.text_keys import contains_words, dedup_key

REFUSAL, FORMAT, FACTUAL, OFF_TOPIC, VAGUE = (
    "unwarranted_refusal",
    "format_violation",
    "factually_incorrect",
    "off_topic",
    "verbose_vague",
)
CONTENT_FREE_KINDS = (REFUSAL, OFF_TOPIC, VAGUE)


@dataclass(frozen=True)
class Built:
    """A candidate negative before the checks."""

    completion: str
    method: str
    repeat_key: str | None = None  # set when the same string could recur (templates, donor answers)
    source_instruction_id: str | None = None


class DonorPool:
    """A seeded reservoir of answers per category, for off-topic and runaway negatives."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self._rng = random.Random(f"{seed}:donors")
        self._seen: Counter[str] = Counter()
        self.by_category: dict[str, list[SFTExample]] = {}

    def offer(self, example: SFTExample) -> None:
        pool = self.by_category.setdefault(example.category, [])
        self._seen[example.category] += 1
        if len(pool) < self.size:
            pool.append(example)
            return
        slot = self._rng.randrange(self._seen[example.category])
        if slot < self.size:
            pool[slot] = example

    @classmethod
    def from_examples(cls, examples: Iterable[SFTExample], size: int, seed: int) -> DonorPool:
        pool = cls(size, seed)
        for example in examples:
            pool.offer(example)
        return pool

    def other_category(self, category: str, rng: random.Random) -> SFTExample | None:
        categories = sorted(name for name, pool in self.by_category.items() if name != category and pool)
        if not categories:
            return None
        return rng.choice(self.by_category[rng.choice(categories)])

    def any(self, rng: random.Random) -> SFTExample | None:
        categories = sorted(name for name, pool in self.by_category.items() if pool)
        return rng.choice(self.by_category[rng.choice(categories)]) if categories else None


@dataclass
class NegativeCounts:
    """What was planned, made, and why the rest was not."""

    examples: int = 0
    planned: Counter[str] = field(default_factory=Counter)
    produced: Counter[str] = field(default_factory=Counter)
    not_applicable: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    per_example: Counter[int] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "negatives": sum(self.produced.values()),
            "planned_by_kind": dict(sorted(self.planned.items())),
            "produced_by_kind": dict(sorted(self.produced.items())),
            "not_applicable_by_kind": dict(sorted(self.not_applicable.items())),
            "rejected_candidates": dict(sorted(self.rejected.items())),
            "methods": dict(sorted(self.methods.items())),
            "negatives_per_example": {str(k): v for k, v in sorted(self.per_example.items())},
        }


class NegativeMaker:
    """Turns examples into negatives one at a time (see the module docstring)."""

    def __init__(self, settings: NegativeSettings, donors: DonorPool):
        self.settings = settings
        self.donors = donors
        self.rng = random.Random(f"{settings.seed}:negatives")
        self.repeats: Counter[str] = Counter()
        self.counts = NegativeCounts()
        self._kinds = settings.mix.kinds()
        self._weights = settings.mix.weights()
        self._builders = {
            REFUSAL: self._refusal,
            FORMAT: self._format_violation,
            FACTUAL: self._factual,
            OFF_TOPIC: self._off_topic,
            VAGUE: self._vague,
        }

    def negatives_for(self, example: SFTExample) -> list[NegativeRecord]:
        chosen = render_completion(example.response)
        made: list[NegativeRecord] = []
        self.counts.examples += 1
        for kind in plan_kinds(self._kinds, self._weights, self.settings.per_example, self.rng):
            self.counts.planned[kind] += 1
            built = self._first_acceptable(kind, example, chosen, {n.completion for n in made})
            if built is None:
                self.counts.not_applicable[kind] += 1
                continue
            if built.repeat_key is not None:
                self.repeats[built.repeat_key] += 1
            self.counts.produced[kind] += 1
            self.counts.methods[f"{kind}:{built.method}"] += 1
            made.append(NegativeRecord(example.id, kind, built.completion, built.method, built.source_instruction_id))
        self.counts.per_example[len(made)] += 1
        return made

    def _first_acceptable(self, kind: str, example: SFTExample, chosen: str, taken: set[str]) -> Built | None:
        for _ in range(self.settings.attempts):
            try:
                built = self._builders[kind](example)
            except FormatError:
                built = None
            if built is None:
                return None  # the kind does not apply to this example; retrying would not change that
            problem = self._problem(kind, built, example, chosen, taken)
            if problem is None:
                return built
            self.counts.rejected[problem] += 1
        return None

    def _problem(self, kind: str, built: Built, example: SFTExample, chosen: str, taken: set[str]) -> str | None:
        if dedup_key(built.completion) == dedup_key(chosen):
            return "equal_to_chosen"
        if kind in CONTENT_FREE_KINDS and contains_words(built.completion, example.response):
            return "contains_chosen"
        if kind == OFF_TOPIC and built.repeat_key is not None and contains_words(example.response, built.repeat_key):
            return "inside_chosen"  # "Yes." borrowed for "Yes, it is." would be a correct answer
        if ".." in built.completion and ".." not in chosen:
            return "doubled_period"
        if built.completion in taken:
            return "duplicate_for_example"
        if built.repeat_key is not None and self.repeats[built.repeat_key] >= self.settings.max_repeats:
            return "repeat_cap"
        return None

    # ------------------------------------------------------------ one builder per kind

    def _refusal(self, example: SFTExample) -> Built:
        text, templated = templates.refusal_text(example, self.rng)
        return Built(render_completion(text), "template", repeat_key=text if templated else None)

    def _vague(self, example: SFTExample) -> Built:
        text = templates.vague_text(self.rng)
        return Built(render_completion(text), "template", repeat_key=text)

    def _off_topic(self, example: SFTExample) -> Built | None:
        key = dedup_key(example.instruction)
        for _ in range(self.settings.attempts):
            donor = self.donors.other_category(example.category, self.rng)
            if donor is None:
                return None
            if dedup_key(donor.instruction) != key:
                return Built(render_completion(donor.response), f"from:{donor.category}", donor.response, donor.id)
        return None

    def _factual(self, example: SFTExample) -> Built | None:
        falsified = falsify(example.response, example.instruction, self.rng)
        if falsified is None:
            return None
        text, method = falsified
        return Built(render_completion(text), method)

    def _format_violation(self, example: SFTExample) -> Built | None:
        constraint = fv.find_constraint(example.instruction)
        if constraint is not None and self.rng.random() < 0.5:
            completion = fv.ignoring_constraint(example, constraint[0], constraint[1], self.rng)
            if completion is not None:
                return Built(completion, f"ignores_constraint:{constraint[0]}")
        method = self.rng.choice(("missing_end", "runaway", "truncated"))
        if method == "truncated":
            completion = fv.truncated(example, self.rng)
            if completion is not None:
                return Built(completion, method)
            method = self.rng.choice(("missing_end", "runaway"))
        if method == "missing_end":
            return Built(fv.missing_end(example), method)
        donor = self.donors.any(self.rng)
        if donor is None or dedup_key(donor.instruction) == dedup_key(example.instruction):
            follow_up = self.rng.choice(templates.RUNAWAY_FOLLOW_UPS)
            return Built(fv.runaway(example, follow_up, None), method)
        answer = donor.response if self.rng.random() < 0.5 else None
        return Built(fv.runaway(example, donor.instruction, answer), method, source_instruction_id=donor.id)


def generate_negatives(
    examples: Iterable[SFTExample], settings: NegativeSettings, donors: DonorPool
) -> tuple[Iterator[NegativeRecord], NegativeCounts]:
    """A lazy stream of negatives and the counts it fills as it is consumed."""
    maker = NegativeMaker(settings, donors)

    def stream() -> Iterator[NegativeRecord]:
        for example in examples:
            yield from maker.negatives_for(example)

    return stream(), maker.counts
