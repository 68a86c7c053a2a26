"""One example as the negatives builders see it (worked out once), and a candidate negative.

Pure: records and strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from stage1.core.format import render_completion
from stage1.core.lengths import word_count
from stage1.core.records import SFTExample
from stage1.core.text_keys import dedup_key
from stage1.negatives import format_violation as fv
from stage1.negatives import phrasing
from stage1.negatives.factual import Falsifier, has_checkable_reference


@dataclass(frozen=True)
class Built:
    """A candidate negative before the checks."""

    completion: str
    method: str
    slot: tuple[str, int] | None = None  # (pool, number) of a template, or ("donor", slot) of the donor it borrows
    source_instruction_id: str | None = None
    borrowed: str | None = None  # the donor's answer, for off-topic negatives


class ExampleView:
    """One example with what its checks and builders need, worked out once (or when first needed)."""

    def __init__(self, example: SFTExample):
        self.example = example
        self.completion = render_completion(example.response)
        self.completion_key = f" {dedup_key(self.completion)} "
        self.response_key = f" {dedup_key(example.response)} "
        self.led_tries = 0  # subject-led candidates built for this example so far

    @cached_property
    def words(self) -> int:
        return word_count(self.completion)

    @cached_property
    def constraint(self) -> tuple[str, int | None] | None:
        return fv.find_constraint(self.example.instruction)

    @cached_property
    def falsifier(self) -> Falsifier:
        return Falsifier(self.example.response, self.example.instruction)

    @cached_property
    def instruction_key(self) -> str:
        return dedup_key(self.example.instruction)

    @cached_property
    def checkable(self) -> bool:
        return has_checkable_reference(self.example.instruction, self.example.category)

    @cached_property
    def lead(self) -> tuple[str, bool] | None:
        """What a refusal or a vague answer opens with, and whether it is the start of a sentence to
        complete: the question's subject where the chosen answer opens with it ("The capital of
        France"), else the chosen answer's own opening words that hold none of its answer ("There
        are", "A week has"), else the instruction's topic ("Paris in France"), else None (``phrasing``)."""
        instruction, response = self.example.instruction, self.example.response
        subject = phrasing.subject_of(instruction)
        if subject is not None and dedup_key(response).startswith(dedup_key(subject) + " "):
            return subject, False
        prefix = phrasing.answer_free_prefix(instruction, response)
        if prefix is not None:
            return prefix, True
        topic = phrasing.topic_of(instruction)
        return None if topic is None else (topic, False)
