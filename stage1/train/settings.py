"""Our own training knobs (the ``training:`` section); TRL's and PEFT's own knobs live in ``sft:``,
``dpo:`` and ``lora:`` and are passed through to their config classes.

Defaults are the tiny CPU preset: full precision, no quantisation, merge on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from stage1.config.load import SEED_RANGE, TypedSection
from stage1.config.typed import settings_from_dict, settings_to_dict
from stage1.core.errors import ConfigError
from stage1.hf.models import Quantization
from stage1.io.layout import DPO_ARM_SOURCES

DTYPES = ("float32", "bfloat16", "float16", "auto")
MERGE_MODES = ("16bit",)
SFT_HANDOFFS = ("merge", "adapter")


@dataclass(frozen=True)
class TrainingSettings:
    """How SFT, merge and DPO run. One-line docs per field; defaults = the tiny preset."""

    overlong: Literal["error", "drop"] = "error"  # a row longer than max_length stops the stage, or is dropped and counted
    target_effective_batch: int | None = None  # SFT: required per-device batch x accumulation x processes (None: not checked)
    dpo_target_effective_batch: int | None = None  # DPO: the same check for the DPO stage (None: not checked)
    quantization: Quantization = "none"  # how the frozen base is held while training (nf4 = QLoRA)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"  # dtype of unquantised weights while training
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where training runs; auto = cuda when available
    sft_handoff: Literal["merge", "adapter"] = "merge"  # DPO starts from the merged SFT model, or goes on training the SFT adapter on the base
    merge_mode: str = "16bit"  # merge into the 16-bit base (the only mode: see __post_init__)
    merge_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # dtype of the merged model (bf16 on GPU runs)
    merge_device: Literal["cpu", "cuda"] = "cpu"  # where the merge runs; cpu keeps a 32B merge off the GPU
    merge_check_logits: bool = True  # measure merged-vs-live logits on fixed probes (loads the live model once more)
    require_all_projections: bool = True  # refuse a LoRA that does not cover all seven Qwen2 projections
    sample_every_steps: int = 0  # greedy samples on a few training prompts every N steps (0 = never)
    sample_prompts: int = 2  # how many training prompts to sample
    sample_max_new_tokens: int = 32  # length limit of those samples
    reward_eval_batch_size: int = 8  # pairs per forward pass when scoring the eval split after DPO
    gpu_memory_gib: float = 80.0  # GPU memory the memory plan checks against (stage1 plan --gpu-gib overrides)
    dpo_only: bool = True  # also run the DPO-only baseline (the same DPO on the raw base) into <run>/dpo_only
    max_chosen_logp_drop: float | None = 5.0  # warn when the eval pairs' mean chosen log-prob ends more than this many nats below the reference (None: never)
    min_sft_gain_kept: float = 0.9  # share of SFT's loss gain the model handed to DPO/eval must keep, as they load it (0: unchecked)
    fidelity_rows: int = 64  # SFT training rows the hand-off check scores per loaded model
    precompute_reference: bool = False  # DPO: score the pairs under the reference once, cached by what determines them
    min_optimizer_steps: int = 50  # plan and each training stage warn when a stage takes fewer optimizer steps
    method_checks: Literal["error", "warn"] = "error"  # DPO's runtime method checks (stage1.core.method_checks): a failed one stops the run, or is only warned about
    step0_loss_tolerance: float = 0.01  # the step-0 DPO loss of each checked pair must be ln 2 within this (policy == reference at step 0)
    min_heldout_margin: float | None = 0.0  # nats: the eval pairs' mean margin over the reference, scored from the pairs file, must end above this (None: recorded, not checked)
    dpo_arms: tuple[str, ...] = ()  # pair sources (rules, policy) each trained alone by a DPO arm of its own on the same SFT model (needs negatives.source: mixed); () = no arms
    seeds: tuple[int, ...] = ()  # training seeds: SFT, hand-off, DPO, DPO-only and evaluation once per seed, read together in seeds/ (run.seed's in the run's own folders); () = run.seed alone

    def __post_init__(self):
        for name in ("target_effective_batch", "dpo_target_effective_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"must be at least 1, got {value}", field=f"training.{name}")
        for name in ("sample_prompts", "sample_max_new_tokens", "reward_eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=f"training.{name}")
        if self.max_chosen_logp_drop is not None and self.max_chosen_logp_drop < 0:
            raise ConfigError(f"must be 0 or more (or null), got {self.max_chosen_logp_drop}", field="training.max_chosen_logp_drop")
        if self.method_checks not in ("error", "warn"):
            raise ConfigError(f"must be error or warn, got {self.method_checks!r}", field="training.method_checks")
        if not 0.0 < self.step0_loss_tolerance < 1.0:
            raise ConfigError(f"must be in (0, 1), got {self.step0_loss_tolerance}", field="training.step0_loss_tolerance")
        if not 0.0 <= self.min_sft_gain_kept <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.min_sft_gain_kept}", field="training.min_sft_gain_kept")
        if self.fidelity_rows < 1:
            raise ConfigError(f"must be at least 1, got {self.fidelity_rows}", field="training.fidelity_rows")
        if self.min_optimizer_steps < 0:
            raise ConfigError(f"must be 0 (no warning) or more, got {self.min_optimizer_steps}", field="training.min_optimizer_steps")
        if self.gpu_memory_gib <= 0:
            raise ConfigError("must be positive", field="training.gpu_memory_gib")
        if self.sample_every_steps < 0:
            raise ConfigError("must be 0 (off) or a positive step interval", field="training.sample_every_steps")
        if self.merge_mode == "dequantized_nf4":
            # Removed: DPO and evaluation reload the merged model in nf4, which snaps a LoRA delta merged
            # into dequantised nf4 weights back onto the same grid (docs/notes/training.md, measured).
            raise ConfigError(
                "merge_mode dequantized_nf4 is removed: reloaded in nf4 by DPO and evaluation, the merge lost almost all of the SFT gain",
                field="training.merge_mode",
                hint="keep the SFT adapter instead (training.sft_handoff: adapter), or merge_mode: 16bit",
            )
        if self.merge_mode not in MERGE_MODES:
            raise ConfigError(f"must be one of {', '.join(MERGE_MODES)}, got {self.merge_mode!r}", field="training.merge_mode")
        for source in self.dpo_arms:
            if source not in DPO_ARM_SOURCES:
                raise ConfigError(f"unknown pair source {source!r}", field="training.dpo_arms",
                                  hint=f"each arm is one of: {', '.join(DPO_ARM_SOURCES)}")
        if len(set(self.dpo_arms)) != len(self.dpo_arms):
            raise ConfigError("a pair source is listed twice", field="training.dpo_arms", hint="list each source once")
        for seed in self.seeds:
            if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
                raise ConfigError(f"must be in [0, 2**32 - 1] (numpy's seed range), got {seed}", field="training.seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("a seed is listed twice", field="training.seeds", hint="list each training seed once")

    def recorded(self) -> dict[str, Any]:
        """The settings as every training stage records and fingerprints them: all but ``dpo_arms``
        and ``seeds``, which say how many trainings a run holds, not how any one of them trains (adding
        arms or seeds to a run leaves the stages it had up to date, and their files as they were)."""
        plain = settings_to_dict(self)
        del plain["dpo_arms"], plain["seeds"]
        return plain

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, source: str | None = None) -> TrainingSettings:
        """Build from the ``training:`` YAML section.

        Raises:
            ConfigError: unknown key (naming the nearest valid one), wrong type, or impossible value.
        """
        return settings_from_dict(cls, data, section="training", source=source)


#: The ``training:`` section of a configuration.
SECTION = TypedSection("training", TrainingSettings)
