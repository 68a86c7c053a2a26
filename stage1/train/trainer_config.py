"""TRL config objects from the ``sft:`` and ``dpo:`` sections, plus the effective-batch check.

The sections are passed straight to ``SFTConfig``/``DPOConfig`` so every TRL knob is available, but
keys are checked against the dataclass fields first (TRL renames arguments between releases:
``max_seq_length`` became ``max_length``), keys the stage owns are refused, and defaults that only
make sense on a GPU (bf16 autocast, gradient checkpointing) follow the device and dtype instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.config.load import LibrarySection
from stage1.config.typed import RangeRules, check_ranges, is_number, is_whole
from stage1.core.errors import ConfigError
from stage1.hf.lora import check_known_keys
from stage1.train.settings import TrainingSettings

log = logging.getLogger(__name__)

# Keys whose value the stage decides; a user value would silently lose, so it is refused.
OWNED_KEYS = {
    "output_dir": "the stage writes into its out_dir",
    "seed": "the stage seed comes from run.seed",
    "model_init_kwargs": "models are loaded by stage1.hf.models (training.quantization, training.dtype)",
    "trust_remote_code": "set model.trust_remote_code",
    "eos_token": "eos is read from the tokenizer and checked against the generation config",
    "pad_token": "pad is the tokenizer's pad token",
    "chat_template_path": "stage1 uses the plain format, never a chat template",
    "assistant_only_loss": "the loss mask comes from stage1.core.masking",
    "logging_nan_inf_filter": "a non-finite loss must stop training, not be hidden from the log",
    "use_cpu": "set training.device",
}


# Keys TRL/transformers dropped, with what to write instead (the nearest-name hint would mislead).
RENAMED_KEYS = {
    "warmup_ratio": "transformers 5 removed it: a warmup_steps below 1 is a fraction of all steps, e.g. warmup_steps: 0.03",
}

# The values DPOTrainer's loss loop has a branch for, in trl 1.16: read from
# trl/trainer/dpo_trainer.py (the `Unknown loss type` error in the loss loop lists them, and
# DPOConfig.loss_type's help names the same ones). An unknown name fails only at the first DPO step.
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)
# SFTConfig.loss_type's metadata["choices"] in trl 1.16 (trl/trainer/sft_config.py); "chunked_nll"
# is a deprecated alias of "nll".
SFT_LOSS_TYPES = ("nll", "dft", "chunked_nll")

_AT_LEAST_ONE = (lambda v: is_whole(v) and v >= 1, "a whole number >= 1")
_POSITIVE = (lambda v: is_number(v) and v > 0, "a finite number > 0")
_STEPS_OR_FRACTION = (
    lambda v: is_number(v) and (0 < v < 1 or (v >= 1 and v == int(v))),
    "a whole number of steps >= 1, or a fraction in (0, 1) of all steps",
)

# The knobs users set most. TRL checks none of these ranges before training starts: a negative
# learning rate or batch size fails deep inside the trainer, a negative beta or max_steps trains.
TRAINER_RULES: RangeRules = {
    "learning_rate": _POSITIVE,
    "beta": _POSITIVE,
    "num_train_epochs": _POSITIVE,
    "max_steps": (lambda v: is_whole(v) and (v == -1 or v >= 1), "-1 (train by epochs) or a whole number of steps >= 1"),
    "per_device_train_batch_size": _AT_LEAST_ONE,
    "per_device_eval_batch_size": _AT_LEAST_ONE,
    "gradient_accumulation_steps": _AT_LEAST_ONE,
    "max_length": (lambda v: v is None or (is_whole(v) and v >= 1), "a whole number >= 1, or null for no limit"),
    # TrainingArguments.get_warmup_steps: below 1 a fraction of all steps, else int(value) steps.
    "warmup_steps": (
        lambda v: is_number(v) and v >= 0 and (v < 1 or v == int(v)),
        "a fraction in [0, 1) of all steps, or a whole number of steps >= 0",
    ),
    # The same reading (TrainingArguments: below 1 a fraction of all steps); 0 makes the trainer divide by it.
    "logging_steps": _STEPS_OR_FRACTION,
    "save_steps": _STEPS_OR_FRACTION,
}


def check_trainer_values(section: str, values: dict[str, Any]) -> None:
    """Refuse, when the config is read, ``sft:``/``dpo:`` values that TRL would only refuse (or
    silently misuse) once training starts.

    Building ``SFTConfig``/``DPOConfig`` here to run their own checks is not an option:
    ``TrainingArguments.__post_init__`` sets up accelerate's process-wide ``PartialState`` (a process
    group under torchrun) and may switch torch's TF32 flags, and its checks miss these ranges anyway.

    Raises:
        ConfigError: ``section.key`` with what is accepted.
    """
    check_ranges(section, values, TRAINER_RULES)
    if section == "sft" and "loss_type" in values and values["loss_type"] not in SFT_LOSS_TYPES:
        raise ConfigError(f"unknown loss type {values['loss_type']!r}", field="sft.loss_type", hint=f"one of: {', '.join(SFT_LOSS_TYPES)}")
    if section == "dpo":
        _check_dpo_losses(values)
    for key in ("lr_scheduler_type", "optim"):
        if key in values:
            _check_enum(section, key, values[key])


def _check_dpo_losses(values: dict[str, Any]) -> None:
    loss_types = values.get("loss_type", ["sigmoid"])
    names = [loss_types] if isinstance(loss_types, str) else loss_types
    if not isinstance(names, (list, tuple)) or not names:
        raise ConfigError(f"expected a loss name or a list of them, got {loss_types!r}", field="dpo.loss_type")
    unknown = [name for name in names if name not in DPO_LOSS_TYPES]
    if unknown:
        raise ConfigError(f"unknown loss type(s) {unknown}", field="dpo.loss_type", hint=f"one of: {', '.join(DPO_LOSS_TYPES)}")
    weights = values.get("loss_weights")
    if weights is None:
        return
    if not isinstance(weights, (list, tuple)) or not all(is_number(w) for w in weights) or len(weights) != len(names):
        raise ConfigError(
            f"expected one number per loss type ({len(names)}: {names}), got {weights!r}",
            field="dpo.loss_weights",
        )


def _check_enum(section: str, key: str, value: Any) -> None:
    """``lr_scheduler_type`` and ``optim`` against transformers' own enums (TrainingArguments converts them)."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    enum = {"lr_scheduler_type": SchedulerType, "optim": OptimizerNames}[key]
    accepted = [member.value for member in enum]
    if value not in accepted:
        raise ConfigError(f"unknown value {value!r}", field=f"{section}.{key}", hint=f"one of: {', '.join(accepted)}")


def resolve_device(settings: TrainingSettings) -> str:
    """``cpu`` or ``cuda``; ``auto`` picks cuda when one is visible.

    Raises:
        ConfigError: ``cuda`` asked for on a machine without one.
    """
    import torch

    if settings.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("no CUDA device is visible", field="training.device", hint="set training.device: cpu")
    return settings.device


def precision_defaults(settings: TrainingSettings, device: str) -> dict[str, Any]:
    """Mixed-precision and checkpointing defaults that follow the device and dtype.

    TRL turns on bf16 autocast and gradient checkpointing by default; on the tiny CPU default both
    only slow things down and bf16 would make the fp32 model's updates noisier.
    """
    compute_bf16 = settings.dtype == "bfloat16" or (settings.quantization != "none" and device == "cuda")
    return {
        "bf16": compute_bf16,
        "fp16": settings.dtype == "float16",
        "activation_checkpointing": device == "cuda",
        "use_cpu": device == "cpu",
    }


def build_trainer_config(
    cls: type,
    user_args: dict[str, Any] | None,
    *,
    section: str,
    defaults: dict[str, Any],
    owned: dict[str, Any],
):
    """``cls(**{defaults, user_args, owned})`` with unknown and owned keys refused.

    Raises:
        ConfigError: an unknown key (with the nearest valid name), a key the stage sets itself,
            or a value TRL refuses.
    """
    user = dict(user_args or {})
    check_known_keys(cls, user, section)
    for key in user:
        if key in OWNED_KEYS:
            raise ConfigError("is set by the training stage", field=f"{section}.{key}", hint=OWNED_KEYS[key])
    check_trainer_values(section, user)
    defaults = dict(defaults)
    if "gradient_checkpointing" in user:  # TRL's older name for the same switch: the user's choice wins
        defaults.pop("activation_checkpointing", None)
    values = {**defaults, **user, "logging_nan_inf_filter": False, **owned}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error), field=section) from None


def stage_defaults(settings: TrainingSettings, device: str, out_dir: Path) -> dict[str, Any]:
    """Defaults shared by SFT and DPO; the section's own keys override them."""
    return {
        **precision_defaults(settings, device),
        "report_to": [],
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 2,
        "dataset_num_proc": None,
        "disable_tqdm": True,
    }


@dataclass(frozen=True)
class EffectiveBatch:
    """Rows per optimizer step: per-device batch x accumulation steps x processes."""

    per_device: int
    accumulation: int
    processes: int

    @property
    def size(self) -> int:
        return self.per_device * self.accumulation * self.processes

    def to_dict(self) -> dict[str, int]:
        return {"per_device": self.per_device, "accumulation": self.accumulation, "processes": self.processes, "size": self.size}


def check_effective_batch(args, target: int | None, *, section: str, target_field: str) -> EffectiveBatch:
    """Compute, log and check the effective batch of a TRL config.

    Raises:
        ConfigError: the product differs from ``target``, naming the accumulation that would fix it.
    """
    batch = EffectiveBatch(args.per_device_train_batch_size, args.gradient_accumulation_steps, max(1, args.world_size))
    log.info(
        "%s effective batch = %d per device x %d accumulation x %d processes = %d",
        section, batch.per_device, batch.accumulation, batch.processes, batch.size,
    )
    if target is not None and batch.size != target:
        per_step = batch.per_device * batch.processes
        fix = (
            f"set {section}.gradient_accumulation_steps: {target // per_step}"
            if target % per_step == 0
            else f"choose {section}.per_device_train_batch_size so that it x processes divides {target}"
        )
        raise ConfigError(
            f"effective batch {batch.per_device} x {batch.accumulation} x {batch.processes} processes = {batch.size}, "
            f"but training.{target_field} is {target}",
            field=f"{section}.gradient_accumulation_steps",
            hint=fix,
        )
    return batch


def _checked_values(section: str):
    def check(values: dict[str, Any]) -> dict[str, Any]:
        check_trainer_values(section, values)
        return values

    return check


#: The ``sft:`` and ``dpo:`` sections of a configuration: TRL's ``SFTConfig`` and ``DPOConfig`` as
#: written, less the keys the training stages set (``OWNED_KEYS``).
SFT_SECTION = LibrarySection("sft", ("trl", "SFTConfig"), owned=OWNED_KEYS, renamed=RENAMED_KEYS, check_values=_checked_values("sft"))
DPO_SECTION = LibrarySection("dpo", ("trl", "DPOConfig"), owned=OWNED_KEYS, renamed=RENAMED_KEYS, check_values=_checked_values("dpo"))
