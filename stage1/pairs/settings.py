"""Settings of the pairs stage (the ``pairs:`` section; defaults: the tiny preset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stage1.config.load import TypedSection
from stage1.core.errors import ConfigError
from stage1.core.leakage import LeakageSettings


@dataclass(frozen=True)
class PairSettings:
    """Settings of the pairs stage (defaults: the tiny preset)."""

    eval_fraction: float = 0.1  # share of instruction groups whose pairs go to eval.jsonl
    seed: int = 0  # split, caps and output order derive from it
    max_pairs_per_instruction: int = 5  # pairs kept per normalised instruction
    max_pairs: int | None = None  # global cap, sampled across instructions; None keeps all
    max_length: int = 512  # tokens of prompt + completion + eos allowed on each side
    leakage: LeakageSettings = field(default_factory=LeakageSettings)  # near-duplicate test against eval items
    # Every negative kind must turn at least this share of its negatives into usable pairs (before the
    # caps), or the stage stops naming the kind and why (a kind whose rejecteds equal the chosen makes none).
    kind_floor: float = 0.5
    on_kind_floor: Literal["stop", "warn"] = "stop"  # warn: log it and record it in the manifest instead

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.eval_fraction}", field="pairs.eval_fraction")
        if self.max_pairs_per_instruction < 1:
            raise ConfigError("must be at least 1", field="pairs.max_pairs_per_instruction")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ConfigError("must be at least 1, or null for no cap", field="pairs.max_pairs")
        if not 0.0 <= self.kind_floor <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.kind_floor}", field="pairs.kind_floor", hint="0 turns the floor off")
        if self.on_kind_floor not in ("stop", "warn"):
            raise ConfigError(f"must be stop or warn, got {self.on_kind_floor!r}", field="pairs.on_kind_floor")
        if self.max_length < 2:
            raise ConfigError(f"must be at least 2, got {self.max_length}", field="pairs.max_length")


#: The ``pairs:`` section of a configuration: its seed follows ``run.seed``, and its ``max_length``
#: follows ``dpo.max_length`` (no pair is kept that DPO would have to cut), unless it sets its own.
SECTION = TypedSection("pairs", PairSettings, follows={"seed": "run.seed", "max_length": "dpo.max_length"})
