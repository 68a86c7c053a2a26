"""Settings of the samples stage (the ``negatives.policy:`` section; defaults: the tiny preset).

The samples stage runs only under ``negatives.source: policy`` or ``mixed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stage1.core.criteria import CRITERION_NAMES
from stage1.core.errors import ConfigError
from stage1.hf.vllm_backend import VLLMSettings


@dataclass(frozen=True)
class PolicySettings:
    """How the merged SFT model's own samples become rejected (and chosen) responses."""

    k: int = 4  # completions sampled per training instruction
    temperature: float = 1.0  # sampling temperature
    top_p: float = 1.0  # nucleus sampling mass
    seed: int = 0  # each sample draws from its own generator, seeded by (seed, instruction id, sample number)
    max_new_tokens: int = 48  # generated tokens at most, per sample
    batch_size: int = 16  # prompts decoded together
    criteria: tuple[str, ...] = ()  # the criteria that score samples and pick pairs (empty: every criterion)
    chosen: Literal["reference", "sample"] = "reference"  # prefer the SFT reference answer, or the best sample passing every criterion
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"  # dtype of the merged model while sampling
    device_map: str | None = None  # e.g. "auto" on a GPU machine
    vllm: VLLMSettings = field(default_factory=VLLMSettings)  # how the vLLM engine is sized (run.generation_backend: vllm), as sft_data.vllm

    def __post_init__(self) -> None:
        for name in ("k", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=f"negatives.policy.{name}")
        if self.k < 2 and self.chosen == "sample":
            raise ConfigError("chosen: sample needs at least two samples to compare", field="negatives.policy.k")
        if self.temperature <= 0:
            raise ConfigError(f"must be greater than 0, got {self.temperature}", field="negatives.policy.temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.top_p}", field="negatives.policy.top_p")
        for name in self.criteria:
            if name not in CRITERION_NAMES:
                raise ConfigError(f"unknown criterion {name!r}", field="negatives.policy.criteria",
                                  hint=f"one of: {', '.join(CRITERION_NAMES)}")
        if len(set(self.criteria)) != len(self.criteria):
            raise ConfigError("a criterion is listed twice", field="negatives.policy.criteria")

    @property
    def selection_criteria(self) -> tuple[str, ...]:
        """The criteria that pick pairs, in report order."""
        return tuple(name for name in CRITERION_NAMES if not self.criteria or name in self.criteria)
