"""Settings of the negatives stage (defaults: the tiny preset)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from stage1.core.errors import ConfigError
from stage1.core.records import NEGATIVE_KINDS


@dataclass(frozen=True)
class NegativeMix:
    """The share of each kind among planned negatives; the five weights must sum to 1."""

    unwarranted_refusal: float = 0.2  # declines a safe request
    format_violation: float = 0.2  # no END, a runaway, a mid-sentence cut, or an ignored constraint
    factually_incorrect: float = 0.2  # the chosen answer with one fact changed
    off_topic: float = 0.2  # another category's chosen answer
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


assert NegativeMix.kinds() == NEGATIVE_KINDS, "the mix must name exactly the record's negative kinds"


@dataclass(frozen=True)
class NegativeSettings:
    """Rule-based negatives for every SFT example."""

    per_example: int = 2  # negatives planned per example (1-5), of different kinds where the mix allows
    mix: NegativeMix = field(default_factory=NegativeMix)  # share of each kind among planned negatives
    seed: int = 0  # every choice derives from it; the global random state is never read
    max_repeats: int = 10  # how often one templated or borrowed rejected string may be used
    donor_pool_size: int = 1024  # answers kept per category (seeded reservoir) for off-topic and runaway negatives
    attempts: int = 4  # tries per planned negative before it counts as not applicable

    def __post_init__(self) -> None:
        if not 1 <= self.per_example <= 5:
            raise ConfigError(f"must be 1 to 5, got {self.per_example}", field="negatives.per_example")
        for name in ("max_repeats", "donor_pool_size", "attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=f"negatives.{name}")
