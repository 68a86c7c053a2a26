"""Negatives for a stream of SFT examples: planned by the mix, built by kind, checked to be worse.

Every negative passes the same checks before it is kept:

- its completion differs from the chosen completion after ``dedup_key`` normalisation;
- refusals, off-topic and vague answers do not contain the chosen answer's words;
- it adds no doubled period the chosen answer does not have (a surface cue, not a content one);
- it is not a second copy of a negative already made for the same example;
- no rejected string is used more than ``max_repeats`` times in the whole output, whatever its
  kind: templates, borrowed text, and strings derived from the chosen answer alike (a thousand
  yes/no examples would otherwise reject " Yes.\nEND" two hundred times). The tail a runaway
  writes is capped as well: no donor is borrowed more than ``max_repeats`` times, as an off-topic
  answer or as a runaway's next exchange, and no follow-up template either, so one borrowed
  instruction does not recur under a hundred different answers.

Builders prefer strings still under the cap (an edit of the answer not yet used up, a format
violation whose string is not), so a repeated answer is given another negative before the kind
is declared not applicable for it.

A planned negative that fails ``attempts`` times, or whose kind does not apply (nothing factual
to change, no example of another category, every string it could make used up), is counted under
``not_applicable`` and never replaced by a canned sentence. The shortfall is made up on later
examples (``mix.ShareKeeper``): an example tries a kind that is behind its share of the output in
place of a planned kind that is ahead, and builds the planned kind if that does not apply either,
so the output keeps the declared mix wherever enough examples admit each kind. Both are counted
(``not_applicable_by_kind``, ``made_up_by_kind``).

State is bounded: the donor pool holds at most ``donor_pool_size`` answers per category; uses of
numbered templates and of donors are counted exactly in fixed-size arrays; uses of every rejected
string are counted in a fixed-size count-min sketch (``repeats``), which can only over-count, so
the cap always holds. Memory does not grow with the number of examples streamed through.

Pure: records, strings and ``random.Random``; same seed and inputs give the same output.
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from stage1.core.format import FormatError, render_completion
from stage1.core.records import NEGATIVE_KINDS, NegativeRecord, SFTExample
from stage1.core.text_keys import dedup_key
from stage1.negatives import format_violation as fv
from stage1.negatives import templates
from stage1.negatives.donors import DonorPool, DonorUses
from stage1.negatives.factual import Falsifier
from stage1.negatives.mix import KindPlanner, ShareKeeper
from stage1.negatives.repeats import RepeatCounter, cells
from stage1.negatives.settings import NegativeSettings

REFUSAL, FORMAT, FACTUAL, OFF_TOPIC, VAGUE = NEGATIVE_KINDS  # the record schema names the kinds, once
CONTENT_FREE_KINDS = (REFUSAL, OFF_TOPIC, VAGUE)
QUOTING_SHARE = 0.25  # refusals that quote the instruction; the rest are numbered templates
FORMAT_METHODS = ("missing_end", "runaway", "truncated")


@dataclass(frozen=True)
class Built:
    """A candidate negative before the checks."""

    completion: str
    method: str
    slot: tuple[str, int] | None = None  # (pool, number) of a template, or ("donor", slot) of the donor it borrows
    source_instruction_id: str | None = None
    borrowed: str | None = None  # the donor's answer, for off-topic negatives


@dataclass
class NegativeCounts:
    """What was planned, made, and why the rest was not."""

    examples: int = 0
    planned: Counter[str] = field(default_factory=Counter)
    produced: Counter[str] = field(default_factory=Counter)
    not_applicable: Counter[str] = field(default_factory=Counter)
    made_up: Counter[str] = field(default_factory=Counter)  # made in place of a planned kind ahead of its share
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
            "made_up_by_kind": dict(sorted(self.made_up.items())),
            "rejected_candidates": dict(sorted(self.rejected.items())),
            "methods": dict(sorted(self.methods.items())),
            "negatives_per_example": {str(k): v for k, v in sorted(self.per_example.items())},
        }


class _Example:
    """One example with what its checks and builders need, worked out once (or when first needed)."""

    def __init__(self, example: SFTExample):
        self.example = example
        self.completion = render_completion(example.response)
        self.completion_key = f" {dedup_key(self.completion)} "
        self.response_key = f" {dedup_key(example.response)} "

    @cached_property
    def constraint(self) -> tuple[str, int | None] | None:
        return fv.find_constraint(self.example.instruction)

    @cached_property
    def falsifier(self) -> Falsifier:
        return Falsifier(self.example.response, self.example.instruction)

    @cached_property
    def instruction_key(self) -> str:
        return dedup_key(self.example.instruction)


class NegativeMaker:
    """Turns examples into negatives one at a time (see the module docstring)."""

    def __init__(self, settings: NegativeSettings, donors: DonorPool):
        self.settings = settings
        self.donors = donors
        self.rng = random.Random(f"{settings.seed}:negatives")
        # Uses per numbered template, in fixed-size arrays: exact caps, memory independent of the stream length.
        self.uses = {
            "refusal": array("I", [0]) * templates.REFUSAL_SPACE,
            "vague": array("I", [0]) * templates.VAGUE_SPACE,
            "follow_up": array("I", [0]) * len(templates.RUNAWAY_FOLLOW_UPS),
        }
        self.donor_uses = DonorUses(donors, settings.max_repeats)
        self.repeats = RepeatCounter()
        self.counts = NegativeCounts()
        self._planner = KindPlanner(settings.mix.kinds(), settings.mix.weights(), settings.per_example)
        self._shares = ShareKeeper(settings.mix.kinds(), settings.mix.weights())
        self._builders = {
            REFUSAL: self._refusal,
            FORMAT: self._format_violation,
            FACTUAL: self._factual,
            OFF_TOPIC: self._off_topic,
            VAGUE: self._vague,
        }

    def negatives_for(self, example: SFTExample) -> list[NegativeRecord]:
        ex = _Example(example)
        made: list[NegativeRecord] = []
        taken: set[str] = set()
        self.counts.examples += 1
        plan = self._planner.plan(self.rng)
        make_up = self._shares.make_up(plan)
        for position, planned in enumerate(plan):
            self.counts.planned[planned] += 1
            found = None
            if make_up is not None and position == make_up[0]:
                # One try per kind behind its share: an opportunity taken, not a search.
                found = self._first_of(make_up[1], ex, taken, attempts=1)
                if found is not None:
                    self.counts.made_up[found[0]] += 1
            found = found or self._first_of((planned,), ex, taken, attempts=self.settings.attempts)
            if found is None:
                self.counts.not_applicable[planned] += 1
                continue
            kind, built, where = found
            self._record_use(built, where)
            self._shares.add(kind)
            self.counts.produced[kind] += 1
            self.counts.methods[f"{kind}:{built.method}"] += 1
            taken.add(built.completion)
            made.append(NegativeRecord(example.id, kind, built.completion, built.method, built.source_instruction_id))
        self.counts.per_example[len(made)] += 1
        return made

    def _first_of(
        self, kinds: Iterable[str], ex: _Example, taken: set[str], attempts: int
    ) -> tuple[str, Built, tuple[int, int]] | None:
        """The first of ``kinds`` that gives an acceptable negative within ``attempts`` tries each:
        (kind, negative, its sketch cells)."""
        for kind in kinds:
            for _ in range(attempts):
                try:
                    built = self._builders[kind](ex)
                except FormatError:
                    built = None
                if built is None:
                    break  # the kind does not apply to this example; retrying would not change that
                where = cells(built.completion)
                problem = self._problem(kind, built, ex, taken, where)
                if problem is None:
                    return kind, built, where
                self.counts.rejected[problem] += 1
        return None

    def _record_use(self, built: Built, where: tuple[int, int]) -> None:
        self.repeats.add(where)
        if built.slot is None:
            return
        pool, index = built.slot
        if pool == "donor":
            self.donor_uses.use(index)
        else:
            self.uses[pool][index] += 1

    def _problem(self, kind: str, built: Built, chosen: _Example, taken: set[str], where: tuple[int, int]) -> str | None:
        # The caps first: they are the cheap checks, and the ones that fail most on repeated answers.
        if self.repeats.count(where) >= self.settings.max_repeats:
            return "repeat_cap"
        if built.slot is not None and built.slot[0] != "donor" and self.uses[built.slot[0]][built.slot[1]] >= self.settings.max_repeats:
            return "repeat_cap"
        if built.completion in taken:
            return "duplicate_for_example"
        completion_key = f" {dedup_key(built.completion)} "
        if completion_key == chosen.completion_key:
            return "equal_to_chosen"
        if kind in CONTENT_FREE_KINDS and chosen.response_key.strip() and chosen.response_key in completion_key:
            return "contains_chosen"
        if built.borrowed is not None and f" {dedup_key(built.borrowed)} " in chosen.response_key:
            return "inside_chosen"  # "Yes." borrowed for "Yes, it is." would be a correct answer
        if ".." in built.completion and ".." not in chosen.completion:
            return "doubled_period"
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

    def _capped(self, completion: str) -> bool:
        """True when ``completion`` has been used ``max_repeats`` times already."""
        return self.repeats.count(cells(completion)) >= self.settings.max_repeats

    def _refusal(self, ex: _Example) -> Built:
        index = None if self.rng.random() < QUOTING_SHARE else self._free_slot("refusal")
        if index is None:  # by choice, or every templated refusal tried is used up
            return Built(render_completion(templates.quoting_refusal(ex.example, self.rng)), "quoting_template")
        return Built(render_completion(templates.refusal_from_index(index)), "template", ("refusal", index))

    def _vague(self, ex: _Example) -> Built | None:
        index = self._free_slot("vague")
        if index is None:
            return None
        return Built(render_completion(templates.vague_from_index(index)), "template", ("vague", index))

    def _off_topic(self, ex: _Example) -> Built | None:
        for _ in range(self.settings.attempts):
            slot = self.donor_uses.draw(self.rng, other_than=ex.example.category)
            if slot is None:
                return None  # one category only, or every donor of the others is used up
            donor = self.donors.donors[slot]
            if dedup_key(donor.instruction) != ex.instruction_key:
                completion = render_completion(donor.response)
                return Built(completion, f"from:{donor.category}", ("donor", slot), donor.id, donor.response)
        return None

    def _factual(self, ex: _Example) -> Built | None:
        """One fact of the answer changed, preferring edits whose text is still under the repeat cap."""

        def usable(text: str) -> bool:
            try:
                return not self._capped(render_completion(text))
            except FormatError:
                return False

        falsified = ex.falsifier.draw(self.rng, usable)
        if falsified is None:
            return None
        text, method = falsified
        return Built(render_completion(text), method)

    def _format_violation(self, ex: _Example) -> Built | None:
        """An ignored constraint (half the time, when the instruction states one), else the first of
        missing_end, runaway and truncated, in random order, that applies and is under the repeat cap."""
        if ex.constraint is not None and self.rng.random() < 0.5:
            completion = fv.ignoring_constraint(ex.example, ex.constraint[0], ex.constraint[1], self.rng)
            if completion is not None and not self._capped(completion):
                return Built(completion, f"ignores_constraint:{ex.constraint[0]}")
        for method in self.rng.sample(FORMAT_METHODS, len(FORMAT_METHODS)):
            if method == "missing_end":
                built: Built | None = Built(fv.missing_end(ex.example), method)
            elif method == "runaway":
                built = self._runaway(ex)
            else:
                completion = fv.truncated(ex.example, self.rng)
                built = None if completion is None else Built(completion, method)
            if built is not None and not self._capped(built.completion):
                return built
        return None

    def _runaway(self, ex: _Example) -> Built | None:
        """The answer, then a donor's instruction (and half the time its answer), or else a follow-up
        template: whichever tail it writes is one still under the repeat cap, or None."""
        slot = self.donor_uses.draw(self.rng)
        donor = None if slot is None else self.donors.donors[slot]
        if donor is not None and dedup_key(donor.instruction) != ex.instruction_key:
            answer = donor.response if self.rng.random() < 0.5 else None
            return Built(fv.runaway(ex.example, donor.instruction, answer), "runaway", ("donor", slot), donor.id)
        uses = self.uses["follow_up"]
        free = [index for index in range(len(uses)) if uses[index] < self.settings.max_repeats]
        if not free:
            return None
        index = self.rng.choice(free)
        return Built(fv.runaway(ex.example, templates.RUNAWAY_FOLLOW_UPS[index], None), "runaway", ("follow_up", index))


def generate_negatives(
    examples: Iterable[SFTExample], settings: NegativeSettings, donors: DonorPool
) -> tuple[Iterator[NegativeRecord], NegativeCounts]:
    """A lazy stream of negatives and the counts it fills as it is consumed."""
    maker = NegativeMaker(settings, donors)

    def stream() -> Iterator[NegativeRecord]:
        for example in examples:
            yield from maker.negatives_for(example)

    return stream(), maker.counts
