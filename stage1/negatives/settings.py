"""Settings of the negatives stage (defaults: the tiny preset)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from stage1.config.load import TypedSection
from stage1.core.errors import ConfigError
from stage1.core.records import NEGATIVE_KINDS
from stage1.samples.settings import PolicySettings

#: Whose answer an off-topic negative borrows (``NegativeSettings.off_topic_from``).
OffTopicFrom = Literal["same_category", "other_categories"]


@dataclass(frozen=True)
class NegativeMix:
    """The share of each kind among planned negatives; the five weights must sum to 1."""

    unwarranted_refusal: float = 0.2  # declines a safe request (a compliant opening on a request marked refusal_expected)
    format_violation: float = 0.2  # no END, a runaway, a mid-sentence cut, or an ignored constraint
    factually_incorrect: float = 0.2  # the chosen answer with one fact changed
    off_topic: float = 0.2  # another example's chosen answer (off_topic_from: of its own category or another)
    verbose_vague: float = 0.2  # many words, no answer

    def __post_init__(self) -> None:
        for name in self.kinds():
            if getattr(self, name) < 0:
                raise ConfigError(f"must be 0 or more, got {getattr(self, name)}", field=f"negatives.mix.{name}")
        total = sum(self.weights())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(
                f"the weights sum to {total:g}, not 1", field="negatives.mix", hint="scale them so they add up to 1"
            )

    @staticmethod
    def kinds() -> tuple[str, ...]:
        return tuple(f.name for f in fields(NegativeMix))

    def weights(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in self.kinds())


#: Kinds made in place of a mixed kind, never planned on their own (``core.kind_for``).
SUBSTITUTE_KINDS = ("complied_when_refusal_expected",)
assert NegativeMix.kinds() + SUBSTITUTE_KINDS == NEGATIVE_KINDS, "the mix must name the record's negative kinds"


@dataclass(frozen=True)
class NegativeSettings:
    """Rule-based negatives for every SFT example."""

    per_example: int = 2  # negatives planned per example (1-5), of different kinds where the mix allows
    mix: NegativeMix = field(default_factory=NegativeMix)  # share of each kind among planned negatives
    seed: int = 0  # every choice derives from it; the global random state is never read
    max_repeats: int = 10  # how often one templated or borrowed rejected string may be used
    donor_pool_size: int = 1024  # answers kept per category (seeded reservoir) for off-topic and runaway negatives
    # Whose answer an off-topic negative borrows: an example of another category ("2 plus 2 is 4."
    # for France; the categories balanced) or of the same one (a question of the same kind about
    # something else: "The capital of Spain is Madrid."; the chosen answer's opening and length).
    off_topic_from: OffTopicFrom = "other_categories"
    attempts: int = 4  # tries per planned negative before it counts as not applicable
    # For every kind: keep "rejected longer than chosen" (ties half) within [low, high] per kind by
    # preferring candidates of matching length; null turns it off.
    length_band: tuple[float, float] | None = (0.3, 0.7)
    # Every kind of the mix must make at least this share of the negatives planned for it, or the
    # stage stops naming the kind and why (a builder that returns the chosen text makes none).
    kind_floor: float = 0.5
    on_kind_floor: Literal["stop", "warn"] = "stop"  # warn: log it and record it in the manifest instead
    source: Literal["rules", "policy", "mixed"] = "rules"  # rejecteds made by rules, sampled from the merged SFT model, or both
    policy_share: float = 0.5  # mixed: share of each instruction group's pairs taken from policy samples (the rest from rules)
    policy: PolicySettings = field(default_factory=PolicySettings)  # the samples stage (source policy or mixed)

    def __post_init__(self) -> None:
        if not 1 <= self.per_example <= 5:
            raise ConfigError(f"must be 1 to 5, got {self.per_example}", field="negatives.per_example")
        if self.length_band is not None:
            if len(self.length_band) != 2 or not 0.0 <= self.length_band[0] <= 0.5 <= self.length_band[1] <= 1.0:
                raise ConfigError(f"must be [low, high] with 0 <= low <= 0.5 <= high <= 1, got {list(self.length_band)}",
                                  field="negatives.length_band", hint="e.g. [0.3, 0.7], or null to turn it off")
        if not 0.0 <= self.kind_floor <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.kind_floor}", field="negatives.kind_floor", hint="0 turns the floor off")
        if self.on_kind_floor not in ("stop", "warn"):
            raise ConfigError(f"must be stop or warn, got {self.on_kind_floor!r}", field="negatives.on_kind_floor")
        if self.off_topic_from not in get_args(OffTopicFrom):
            raise ConfigError(f"must be one of {', '.join(get_args(OffTopicFrom))}, got {self.off_topic_from!r}",
                              field="negatives.off_topic_from")
        if not 0.0 <= self.policy_share <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.policy_share}", field="negatives.policy_share")
        for name in ("max_repeats", "donor_pool_size", "attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=f"negatives.{name}")


#: The ``negatives:`` section of a configuration; its seed follows ``run.seed`` unless it sets its own.
SECTION = TypedSection("negatives", NegativeSettings, follows={"seed": "run.seed"})
