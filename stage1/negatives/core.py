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

A request marked ``refusal_expected`` never gets an ``unwarranted_refusal``: the refusal share of
the mix is spent there on ``complied_when_refusal_expected`` (``kind_for``), and counted against
the refusal weight by ``ShareKeeper`` (``share_kind``), so a pool with a few such requests keeps
the declared mix and the other examples' plans are unchanged.

A planned negative that fails ``attempts`` times, or whose kind does not apply (nothing factual
to change, no other example to borrow an answer from, every string it could make used up), is counted under
``not_applicable`` and never replaced by a canned sentence. The shortfall is made up on later
examples (``mix.ShareKeeper``): an example tries a kind that is behind its share of the output in
place of a planned kind that is ahead, and builds the planned kind if that does not apply either,
so the output keeps the declared mix wherever enough examples admit each kind. Both are counted
(``not_applicable_by_kind``, ``made_up_by_kind``).

State is bounded: the donor pool holds at most ``donor_pool_size`` answers per category; uses of
numbered templates and of donors are counted exactly in fixed-size arrays; uses of every rejected
string are counted in a fixed-size count-min sketch (``repeats``), which can only over-count, so
the cap always holds. Memory does not grow with the number of examples streamed through.

Length is kept from telling rejected from chosen for every kind (``counts.LengthBand``): a
candidate whose word count would push its kind's share of "rejected longer than chosen" (ties
counted half) further outside ``length_band`` is set aside while the remaining attempts look for
one of matching length; when none is found the first one set aside is used, so the band steers the
choice without changing how many negatives are made. Refusals and vague answers are built at the
chosen answer's length to begin with, and led by the question's subject where it has one, so they
open as the chosen answer does (``phrasing``): their defect is declining and vagueness, not
length or an opening; runaways (longer) and truncations (shorter) are steered together.

A factually incorrect negative is made only for an item with a checkable reference
(``factual.has_checkable_reference``): a changed title or list member is another valid answer.
Every item a kind was tried on and could not serve is counted (``items_not_served_by_kind``).

Pure: records, strings and ``random.Random``; same seed and inputs give the same output.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterable, Iterator

from stage1.core.format import FormatError, render_completion
from stage1.core.lengths import word_count
from stage1.core.records import NEGATIVE_KINDS, NegativeRecord, SFTExample
from stage1.core.text_keys import dedup_key
from stage1.negatives import format_violation as fv
from stage1.negatives import phrasing, templates
from stage1.negatives.candidate import Built, ExampleView
from stage1.negatives.counts import LengthBand, NegativeCounts
from stage1.negatives.donors import DonorPool, DonorUses
from stage1.negatives.mix import KindPlanner, ShareKeeper
from stage1.negatives.repeats import RepeatCounter, cells
from stage1.negatives.settings import NegativeSettings

REFUSAL, FORMAT, FACTUAL, OFF_TOPIC, VAGUE, COMPLIED = NEGATIVE_KINDS  # the record schema names the kinds, once
CONTENT_FREE_KINDS = (REFUSAL, OFF_TOPIC, VAGUE, COMPLIED)
KIND_OF_POOL = {"refusal": REFUSAL, "vague": VAGUE}  # the kind each numbered template pool makes


def kind_for(planned: str, refusal_expected: bool) -> str:
    """The kind built for a planned kind: on a request that should be declined, the refusal share
    of the mix is spent on ``complied_when_refusal_expected`` (a compliant opening), and that
    request never gets an ``unwarranted_refusal``; elsewhere the compliant kind does not apply."""
    if planned == REFUSAL and refusal_expected:
        return COMPLIED
    if planned == COMPLIED and not refusal_expected:
        return REFUSAL
    return planned


def share_kind(kind: str) -> str:
    """The mix weight a produced kind counts against: compliance on a declined request takes the refusal share."""
    return REFUSAL if kind == COMPLIED else kind


QUOTING_SHARE = 0.15  # refusals without a subject lead that quote the instruction; the rest are numbered templates
SUBJECT_SHARE = 1.0  # refusals and vague answers led by the question's subject wherever one fits the length
FORMAT_METHODS = ("missing_end", "runaway", "truncated")


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
            "complied": array("I", [0]) * templates.COMPLIED_SPACE,
        }
        self.donor_uses = DonorUses(donors, settings.max_repeats)
        self.repeats = RepeatCounter()
        self.counts = NegativeCounts(length_band=LengthBand(settings.length_band))
        self._planner = KindPlanner(settings.mix.kinds(), settings.mix.weights(), settings.per_example)
        self._shares = ShareKeeper(settings.mix.kinds(), settings.mix.weights())
        self._builders = {
            REFUSAL: self._refusal,
            FORMAT: self._format_violation,
            FACTUAL: self._factual,
            OFF_TOPIC: self._off_topic,
            VAGUE: self._vague,
            COMPLIED: self._complied,
        }

    def negatives_for(self, example: SFTExample) -> list[NegativeRecord]:
        ex = ExampleView(example)
        made: list[NegativeRecord] = []
        taken: set[str] = set()
        unserved: set[str] = set()
        self.counts.examples += 1
        plan = self._planner.plan(self.rng)
        make_up = self._shares.make_up(plan)
        for position, planned in enumerate(plan):
            planned = kind_for(planned, example.refusal_expected)
            self.counts.planned[planned] += 1
            found = None
            if make_up is not None and position == make_up[0]:
                # One try per kind behind its share: an opportunity taken, not a search.
                found = self._first_of(make_up[1], ex, taken, 1, unserved)
                if found is not None:
                    self.counts.made_up[found[0]] += 1
            found = found or self._first_of((planned,), ex, taken, self.settings.attempts, unserved)
            if found is None:
                self.counts.not_applicable[planned] += 1
                continue
            kind, built, where, words = found
            self._record_use(built, where)
            self.counts.length_band.add(kind, ex.words, words)
            self._shares.add(share_kind(kind))
            self.counts.produced[kind] += 1
            self.counts.methods[f"{kind}:{built.method}"] += 1
            taken.add(built.completion)
            made.append(NegativeRecord(example.id, kind, built.completion, built.method, built.source_instruction_id))
        self.counts.per_example[len(made)] += 1
        self.counts.not_served.update(unserved - {negative.kind for negative in made})
        return made

    def _first_of(
        self, kinds: Iterable[str], ex: ExampleView, taken: set[str], attempts: int, unserved: set[str]
    ) -> tuple[str, Built, tuple[int, int], int] | None:
        """The first of ``kinds`` that gives an acceptable negative within ``attempts`` tries each:
        (kind, negative, its sketch cells, its words); the kinds that gave none go into ``unserved``."""
        band = self.counts.length_band
        for kind in dict.fromkeys(kind_for(planned, ex.example.refusal_expected) for planned in kinds):
            set_aside = None  # the first acceptable candidate of the wrong length
            for _ in range(attempts):
                try:
                    built = self._builders[kind](ex)
                except FormatError:
                    built = None
                if built is None:
                    break  # the kind does not apply to this example; retrying would not change that
                where = cells(built.completion)
                problem = self._problem(kind, built, ex, taken, where)
                words = word_count(built.completion)
                if problem is None and band.outside(kind, ex.words, words):
                    problem = "length_band"
                    set_aside = set_aside or (kind, built, where, words)
                if problem is None:
                    return kind, built, where, words
                self.counts.reject(kind, problem)
            if set_aside is not None:
                self.counts.reject(kind, "length_band_kept_anyway")
                return set_aside
            unserved.add(kind)
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

    def _problem(self, kind: str, built: Built, chosen: ExampleView, taken: set[str], where: tuple[int, int]) -> str | None:
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

    def _draw_slot(self, pool: str) -> int | None:
        """One random string number of ``pool``, or None when that one is used up."""
        index = self.rng.randrange(len(self.uses[pool]))
        return index if self.uses[pool][index] < self.settings.max_repeats else None

    def _numbered(self, pool: str, ex: ExampleView, words) -> int | None:
        """A numbered template of ``pool`` under the cap whose length is near the chosen answer's."""
        target = phrasing.target_words(ex.words, self.rng, self.counts.length_band.lean(KIND_OF_POOL[pool]))
        return phrasing.closest_to(target, lambda: self._draw_slot(pool), words, tries=2 * self.settings.attempts)

    def _subject_led(self, ex: ExampleView, kind: str, cores: tuple[tuple[str, ...], tuple[str, ...]], extras: tuple[str, ...]) -> str | None:
        """Led by the question's subject or the sentence to complete (``cores``: for a subject, for a
        fragment), for a share of the items that have one (``phrasing``)."""
        ex.led_tries += 1
        if ex.lead is None or ex.led_tries > 2 or self.rng.random() >= SUBJECT_SHARE:
            return None  # no subject, or its few strings of the right length are taken: a numbered one
        lead, is_fragment = ex.lead
        target = phrasing.target_words(ex.words, self.rng, self.counts.length_band.lean(kind))
        if len(lead.split()) + 1 > target:
            return None  # too long for this answer: a short template keeps the length cue away
        return phrasing.subject_led(cores[is_fragment], extras, lead, target, self.rng)

    def _refusal(self, ex: ExampleView) -> Built:
        led = self._subject_led(ex, REFUSAL, (templates.SUBJECT_REFUSAL_CORES, templates.FRAGMENT_REFUSAL_CORES), templates.REFUSAL_CLOSERS)
        if led is not None:
            return Built(render_completion(led), "subject_template")
        index = None if self.rng.random() < QUOTING_SHARE else self._numbered("refusal", ex, templates.refusal_words)
        if index is None:  # by choice, or every templated refusal tried is used up
            return Built(render_completion(templates.quoting_refusal(ex.example, self.rng)), "quoting_template")
        return Built(render_completion(templates.refusal_from_index(index)), "template", ("refusal", index))

    def _complied(self, ex: ExampleView) -> Built | None:
        """A compliant opening for a request that should be declined (it never carries out the request)."""
        index = self._free_slot("complied")
        if index is None:
            return None
        return Built(render_completion(templates.complied_from_index(index)), "template", ("complied", index))

    def _vague(self, ex: ExampleView) -> Built | None:
        led = self._subject_led(ex, VAGUE, (templates.SUBJECT_VAGUE_CORES, templates.FRAGMENT_VAGUE_CORES),
                                templates.VAGUE_FILLERS + templates.VAGUE_CLOSERS)
        if led is not None:
            return Built(render_completion(led), "subject_template")
        index = self._numbered("vague", ex, templates.vague_words)
        if index is None:
            return None
        return Built(render_completion(templates.vague_from_index(index)), "template", ("vague", index))

    def _off_topic(self, ex: ExampleView) -> Built | None:
        """Another example's answer: of the same category (``off_topic_from: same_category``: it opens
        as the chosen answer does and answers a question of the same kind about something else), or
        of another category, where an example of a category over its balanced share takes one only
        at ``DonorPool.accept`` (``donors.balanced_shares`` says why). A declined request's category
        lends no donor and is not capped."""
        category = ex.example.category
        within = self.settings.off_topic_from == "same_category"
        if not within and self.rng.random() >= self.donors.accept.get(category, 1.0):
            return None
        for _ in range(self.settings.attempts):
            if within:
                slot = self.donor_uses.draw_within(self.rng, category)
            else:
                slot = self.donor_uses.draw(self.rng, other_than=category, weighted=True)
            if slot is None:
                return None  # no other donor of that category (or no other category), or all used up
            donor = self.donors.donors[slot]
            if dedup_key(donor.instruction) != ex.instruction_key:
                completion = render_completion(donor.response)
                return Built(completion, f"from:{donor.category}", ("donor", slot), donor.id, donor.response)
        return None

    def _factual(self, ex: ExampleView) -> Built | None:
        """One fact of the answer changed, preferring edits whose text is still under the repeat cap;
        None for an item without a checkable reference (a title, a free choice)."""
        if not ex.checkable:
            return None

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

    def _format_violation(self, ex: ExampleView) -> Built | None:
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

    def _runaway(self, ex: ExampleView) -> Built | None:
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
