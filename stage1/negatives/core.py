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

State is bounded: the donor pool holds at most ``donor_pool_size`` answers per category, and uses
of the strings that can repeat (numbered templates, donor answers) are counted in fixed-size
arrays, so memory does not grow with the number of examples streamed through. Negatives derived
from the chosen answer (factual, format) are as varied as the answers and are not capped.

Pure: records, strings and ``random.Random``; same seed and inputs give the same output.
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stage1.format import FormatError, render_completion
from stage1.negatives import format_violation as fv
from stage1.negatives import templates
from stage1.negatives.factual import falsify
from stage1.negatives.mix import KindPlanner
from stage1.negatives.settings import NegativeSettings
from stage1.records import NegativeRecord, SFTExample
from stage1.text_keys import dedup_key

REFUSAL, FORMAT, FACTUAL, OFF_TOPIC, VAGUE = (
    "unwarranted_refusal",
    "format_violation",
    "factually_incorrect",
    "off_topic",
    "verbose_vague",
)
CONTENT_FREE_KINDS = (REFUSAL, OFF_TOPIC, VAGUE)
QUOTING_SHARE = 0.25  # refusals that quote the instruction; the rest are numbered templates


@dataclass(frozen=True)
class Built:
    """A candidate negative before the checks."""

    completion: str
    method: str
    slot: tuple[str, int] | None = None  # (pool, number) of a string that could recur: a template or a donor answer
    source_instruction_id: str | None = None
    borrowed: str | None = None  # the donor's answer, for off-topic negatives


class DonorPool:
    """A seeded reservoir of answers per category, for off-topic and runaway negatives.

    After ``freeze`` every donor has a number (its slot) and no two donors share an answer after
    ``dedup_key``, so counting uses per slot counts uses per string.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self._rng = random.Random(f"{seed}:donors")
        self._seen: Counter[str] = Counter()
        self._reservoirs: dict[str, list[SFTExample]] = {}
        self.donors: list[SFTExample] = []
        self.by_category: dict[str, list[int]] = {}

    def offer(self, example: SFTExample) -> None:
        pool = self._reservoirs.setdefault(example.category, [])
        self._seen[example.category] += 1
        if len(pool) < self.size:
            pool.append(example)
            return
        slot = self._rng.randrange(self._seen[example.category])
        if slot < self.size:
            pool[slot] = example

    def freeze(self) -> DonorPool:
        """Number the donors, dropping answers already held (in sorted category order)."""
        answers: set[str] = set()
        for category in sorted(self._reservoirs):
            for example in self._reservoirs[category]:
                key = dedup_key(example.response)
                if key in answers:
                    continue
                answers.add(key)
                self.by_category.setdefault(category, []).append(len(self.donors))
                self.donors.append(example)
        self._reservoirs = {}
        return self

    @classmethod
    def from_examples(cls, examples: Iterable[SFTExample], size: int, seed: int) -> DonorPool:
        pool = cls(size, seed)
        for example in examples:
            pool.offer(example)
        return pool.freeze()

    def other_category(self, category: str, rng: random.Random) -> int | None:
        """The slot of a donor from another category, or None when there is no other category."""
        categories = sorted(name for name in self.by_category if name != category)
        return rng.choice(self.by_category[rng.choice(categories)]) if categories else None

    def any(self, rng: random.Random) -> SFTExample | None:
        return rng.choice(self.donors) if self.donors else None


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


class _Chosen:
    """The chosen answer of one example, rendered and normalised once for all its checks."""

    def __init__(self, example: SFTExample):
        self.completion = render_completion(example.response)
        self.completion_key = f" {dedup_key(self.completion)} "
        self.response_key = f" {dedup_key(example.response)} "


class NegativeMaker:
    """Turns examples into negatives one at a time (see the module docstring)."""

    def __init__(self, settings: NegativeSettings, donors: DonorPool):
        self.settings = settings
        self.donors = donors
        self.rng = random.Random(f"{settings.seed}:negatives")
        # Uses per numbered string, in fixed-size arrays: exact caps, memory independent of the stream length.
        self.uses = {
            "refusal": array("I", [0]) * templates.REFUSAL_SPACE,
            "vague": array("I", [0]) * templates.VAGUE_SPACE,
            "donor": array("I", [0]) * len(donors.donors),
        }
        self.counts = NegativeCounts()
        self._planner = KindPlanner(settings.mix.kinds(), settings.mix.weights(), settings.per_example)
        self._builders = {
            REFUSAL: self._refusal,
            FORMAT: self._format_violation,
            FACTUAL: self._factual,
            OFF_TOPIC: self._off_topic,
            VAGUE: self._vague,
        }

    def negatives_for(self, example: SFTExample) -> list[NegativeRecord]:
        chosen = _Chosen(example)
        made: list[NegativeRecord] = []
        self.counts.examples += 1
        for kind in self._planner.plan(self.rng):
            self.counts.planned[kind] += 1
            built = self._first_acceptable(kind, example, chosen, {n.completion for n in made})
            if built is None:
                self.counts.not_applicable[kind] += 1
                continue
            if built.slot is not None:
                self.uses[built.slot[0]][built.slot[1]] += 1
            self.counts.produced[kind] += 1
            self.counts.methods[f"{kind}:{built.method}"] += 1
            made.append(NegativeRecord(example.id, kind, built.completion, built.method, built.source_instruction_id))
        self.counts.per_example[len(made)] += 1
        return made

    def _first_acceptable(self, kind: str, example: SFTExample, chosen: _Chosen, taken: set[str]) -> Built | None:
        for _ in range(self.settings.attempts):
            try:
                built = self._builders[kind](example)
            except FormatError:
                built = None
            if built is None:
                return None  # the kind does not apply to this example; retrying would not change that
            problem = self._problem(kind, built, chosen, taken)
            if problem is None:
                return built
            self.counts.rejected[problem] += 1
        return None

    def _problem(self, kind: str, built: Built, chosen: _Chosen, taken: set[str]) -> str | None:
        completion_key = f" {dedup_key(built.completion)} "
        if completion_key == chosen.completion_key:
            return "equal_to_chosen"
        if kind in CONTENT_FREE_KINDS and chosen.response_key.strip() and chosen.response_key in completion_key:
            return "contains_chosen"
        if built.borrowed is not None and f" {dedup_key(built.borrowed)} " in chosen.response_key:
            return "inside_chosen"  # "Yes." borrowed for "Yes, it is." would be a correct answer
        if ".." in built.completion and ".." not in chosen.completion:
            return "doubled_period"
        if built.completion in taken:
            return "duplicate_for_example"
        if built.slot is not None and self.uses[built.slot[0]][built.slot[1]] >= self.settings.max_repeats:
            return "repeat_cap"
        return None

    # ------------------------------------------------------------ one builder per kind

    def _free_slot(self, pool: str) -> int | None:
        """A random string number of ``pool`` used fewer than ``max_repeats`` times, or None."""
        uses = self.uses[pool]
        for _ in range(self.settings.attempts):
            index = self.rng.randrange(len(uses))
            if uses[index] < self.settings.max_repeats:
                return index
        return None

    def _refusal(self, example: SFTExample) -> Built:
        index = None if self.rng.random() < QUOTING_SHARE else self._free_slot("refusal")
        if index is None:  # by choice, or every templated refusal tried is used up
            return Built(render_completion(templates.quoting_refusal(example, self.rng)), "quoting_template")
        return Built(render_completion(templates.refusal_from_index(index)), "template", ("refusal", index))

    def _vague(self, example: SFTExample) -> Built | None:
        index = self._free_slot("vague")
        if index is None:
            return None
        return Built(render_completion(templates.vague_from_index(index)), "template", ("vague", index))

    def _off_topic(self, example: SFTExample) -> Built | None:
        key = dedup_key(example.instruction)
        for _ in range(self.settings.attempts):
            slot = self.donors.other_category(example.category, self.rng)
            if slot is None:
                return None
            donor = self.donors.donors[slot]
            if dedup_key(donor.instruction) != key and self.uses["donor"][slot] < self.settings.max_repeats:
                completion = render_completion(donor.response)
                return Built(completion, f"from:{donor.category}", ("donor", slot), donor.id, donor.response)
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
