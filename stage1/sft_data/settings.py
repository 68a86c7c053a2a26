"""Settings of the SFT data stage (the ``sft_data:`` section; defaults: the tiny preset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stage1.config.load import TypedSection
from stage1.core.errors import ConfigError
from stage1.core.generation import GenerationSettings
from stage1.core.leakage import LeakageSettings
from stage1.hf.models import Quantization
from stage1.hf.vllm_backend import VLLMSettings


@dataclass(frozen=True)
class SFTDataSettings:
    """Settings of the SFT data stage (defaults: the tiny preset)."""

    source: Literal["file", "model"] = "file"  # responses supplied with the instructions, or written by the base model
    heldout_fraction: float = 0.1  # share of instruction groups held out from SFT training
    seed: int = 0  # splits, exemplar choice and sampling derive from it
    max_per_instruction: int = 1  # accepted responses per normalised instruction, across the dataset
    refusal_phrases: tuple[str, ...] = ()  # extra phrases: a sentence opening with one is a refusal, beyond criteria.is_refusal
    keep_rescued_runaways: bool = False  # keep the answer before a runaway (still counted as runaway)
    num_fewshot: int = 3  # exemplars per prompt (source=model)
    samples_per_instruction: int = 1  # generations per instruction (source=model)
    quantization: Quantization = "none"  # how the base model is loaded (source=model)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"  # base model dtype (source=model)
    device_map: str | None = None  # e.g. "auto" on a GPU machine (source=model)
    generation: GenerationSettings = field(default_factory=GenerationSettings)  # decoding (source=model)
    vllm: VLLMSettings = field(default_factory=VLLMSettings)  # engine sizing with run.generation_backend: vllm
    leakage: LeakageSettings = field(default_factory=LeakageSettings)  # near-duplicate test against eval items

    def __post_init__(self) -> None:
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.heldout_fraction}", field="sft_data.heldout_fraction")
        for name in ("max_per_instruction", "samples_per_instruction"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=f"sft_data.{name}")
        if self.num_fewshot < 0:
            raise ConfigError(f"must be 0 or more, got {self.num_fewshot}", field="sft_data.num_fewshot")


#: The ``sft_data:`` section of a configuration; its seed follows ``run.seed`` unless it sets its own.
SECTION = TypedSection("sft_data", SFTDataSettings, follows={"seed": "run.seed"})
