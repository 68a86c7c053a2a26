"""The training stages: ``sft`` (LoRA/QLoRA SFT), ``merge`` (the SFT model handed on), ``dpo`` (DPO
from the SFT model), the DPO-only baseline ``dpo_only`` and the DPO arms (``training.dpo_arms``);
what each reads, the ``training`` keys its fingerprint covers, and its entry point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stage1.core.errors import ConfigError
from stage1.io.layout import ADAPTER_DIR, DPO_ARMS, DPO_ONLY, MANIFEST, SOURCE_ARMS, DPOArm, RunLayout
from stage1.io.layout import DPO as DPO_ARM
from stage1.io.stage_spec import StageCall, StageInput, StageSpec
from stage1.organism.spec import BASE_MODEL
from stage1.pairs.spec import STAGE as PAIRS
from stage1.sft_data.spec import STAGE as SFT_DATA
from stage1.sft_data.spec import sft_train
from stage1.train import merge as merge_stage  # looked up when the entry runs: tests stand in for run_merge
from stage1.train.merge import STAGE as MERGE
from stage1.train.names import DPO, SFT

if TYPE_CHECKING:
    from stage1.stages.config import PipelineConfig

#: ``training`` keys only the DPO stages (and the memory plan) read: a stage is stale only when
#: something it reads changed, so SFT and merge leave them out of their fingerprints
#: (``training.precompute_reference`` used to mark SFT stale).
DPO_ONLY_TRAINING = ("dpo_target_effective_batch", "reward_eval_batch_size", "max_chosen_logp_drop", "precompute_reference",
                     "dpo_only", "gpu_memory_gib", "method_checks", "step0_loss_tolerance", "min_heldout_margin")
#: ``training`` keys only the merge (hand-off) stage reads, beyond those SFT reads.
MERGE_ONLY_TRAINING = ("sft_handoff", "merge_mode", "merge_dtype", "merge_device", "merge_check_logits", "min_sft_gain_kept",
                       "fidelity_rows")


def _training_read_by(config: PipelineConfig, stage: str) -> dict[str, Any]:
    """The ``training`` settings ``stage`` reads (``recorded()``, less what only later stages read)."""
    left_out = {SFT: (*DPO_ONLY_TRAINING, *MERGE_ONLY_TRAINING), MERGE: DPO_ONLY_TRAINING}.get(stage, ())
    return {key: value for key, value in config.training.recorded().items() if key not in left_out}


def former_settings(stage: str, config: PipelineConfig) -> Any | None:
    """A stage's settings as the previous release fingerprinted them (every ``training`` key), or None
    where nothing changed: a run recorded under that rule stays up to date instead of retraining."""
    if stage == SFT:
        return {"training": config.training.recorded(), "sft": config.sft, "lora": config.lora, "seed": config.run.seed}
    if stage == MERGE:
        return {"training": config.training.recorded(), "eval_dtype": config.eval.dtype}
    return None


def _training_settings(section: str) -> Callable[[PipelineConfig], dict[str, Any]]:
    """A training stage's settings: ``section`` is its trainer's section (``sft``, ``dpo``), named as the stage."""
    return lambda config: {"training": _training_read_by(config, section), section: config.section(section), "lora": config.lora,
                           "seed": config.run.seed}


def _dpo_arm_settings(arm: DPOArm) -> Callable[[PipelineConfig], dict[str, Any]]:
    return lambda config: {**_training_settings("dpo")(config), "negative_source": arm.pairs_source}


def _dpo_start(layout: RunLayout, config: PipelineConfig) -> Path:
    """The model DPO loads: the merged SFT model, or the base under ``sft_handoff: adapter``."""
    return layout.model if config.training.sft_handoff == "adapter" else layout.merged


PAIR_FILES = (
    StageInput("train", "training preference pairs (pairs/train.jsonl: prompt, chosen, rejected)", lambda layout, config: layout.pairs_train,
               stage=PAIRS),
    StageInput("eval", "held-out preference pairs (pairs/eval.jsonl)", lambda layout, config: layout.pairs_eval, stage=PAIRS),
)
#: What ``dpo`` and each DPO arm read.
DPO_INPUTS = (
    StageInput("model", "the model DPO starts from (the merged SFT model; the base with sft_handoff: adapter)", _dpo_start, stage=MERGE),
    *PAIR_FILES,
    StageInput("sft_adapter", "the SFT adapter DPO trains on (sft/adapter; sft_handoff: adapter)",
               lambda layout, config: layout.sft_adapter, required=False, stage=SFT,
               # Read only when DPO continues it; after a merge, DPO reads the merged model.
               read=lambda config: config.training.sft_handoff == "adapter"),
)

# ---------------------------------------------------------------- entry points


def train_sft(call: StageCall) -> Any:
    from stage1.train.sft import run_train_sft  # torch, transformers, PEFT and TRL: imported when SFT runs

    return run_train_sft(call.config.training, sft_args=dict(call.config.sft), **_training_call(call))


def _training_call(call: StageCall) -> dict[str, Any]:
    """What every training stage is handed: its model and training rows, its folder, the LoRA
    settings, the seed, whether it resumes, its fingerprint and the callbacks."""
    return {"model_dir": call.inputs["model"], "train_path": call.inputs["train"], "out_dir": call.out_dir,
            "lora_args": dict(call.config.lora), "seed": call.config.run.seed, "resume": not call.run.forced,
            "stage_fingerprint": call.run.fingerprint, "callbacks": call.callbacks}


def merge(call: StageCall) -> Any:
    training = call.config.training
    keep_adapter = training.sft_handoff == "adapter"
    if (keep_adapter or training.quantization != "none") and "sft_train" not in call.inputs:
        raise ConfigError("the SFT model handed on must be checked against its training rows", field="--in",
                          hint="add --in sft_train=<run>/sft_data/train.jsonl")
    handoff = merge_stage.run_handoff if keep_adapter else merge_stage.run_merge
    return handoff(training, model_dir=call.inputs["model"], adapter_dir=call.inputs["adapter"], out_dir=call.out_dir,
                   sft_train_path=call.inputs.get("sft_train"), eval_dtype=call.config.eval.dtype)


def train_dpo_chain(call: StageCall, arm: DPOArm = DPO_ARM) -> Any:
    """DPO after SFT: on the merged model, or (``sft_handoff: adapter``) continuing the SFT adapter on
    the base; a DPO arm on its source's pairs only."""
    if call.config.training.sft_handoff != "adapter":
        return train_dpo(call, arm=arm)
    if "sft_adapter" not in call.inputs:
        raise ConfigError("training.sft_handoff: adapter trains the SFT adapter on", field="--in",
                          hint="add --in sft_adapter=<run>/sft/adapter and --in model=<the base model>")
    return train_dpo(call, sft_adapter_dir=call.inputs["sft_adapter"], arm=arm)


def train_dpo_arm(arm: DPOArm) -> Callable[[StageCall], Any]:
    return lambda call: train_dpo_chain(call, arm=arm)


def train_dpo(call: StageCall, sft_adapter_dir: Path | None = None, arm: DPOArm = DPO_ONLY) -> Any:
    """One DPO training into ``call.out_dir``; called alone, the DPO-only baseline (on the raw base)."""
    from stage1.train.dpo import run_train_dpo  # torch, transformers, PEFT and TRL: imported when DPO runs

    return run_train_dpo(call.config.training, eval_path=call.inputs["eval"], dpo_args=dict(call.config.dpo),
                         sft_adapter_dir=sft_adapter_dir, negative_source=arm.pairs_source, **_training_call(call))


# ---------------------------------------------------------------- the declarations


def _dpo_arm_spec(arm: DPOArm) -> StageSpec:
    """A DPO arm (``training.dpo_arms``): ``dpo`` again, from the same SFT model (its reference), on
    one source's pairs of each split only, into its own folder."""
    return StageSpec(
        arm.name, None, f"a DPO arm: the same DPO from the SFT model on the {arm.pairs_source} pairs only (training.dpo_arms)",
        outputs=(ADAPTER_DIR, MANIFEST), inputs=DPO_INPUTS, settings=_dpo_arm_settings(arm), entry=train_dpo_arm(arm),
        enabled=arm.trained_in_run,
    )


#: ``sft`` and ``merge``, which run before the negatives; ``DPO_STAGES`` run after the pairs.
SFT_STAGES = (
    StageSpec(
        SFT, "train-sft", "LoRA/QLoRA SFT with the loss on the response and END",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=(BASE_MODEL, StageInput("train", "SFT training examples (sft_data/train.jsonl)", sft_train, stage=SFT_DATA)),
        settings=_training_settings("sft"), entry=train_sft,
    ),
    StageSpec(
        MERGE, "merge", "the SFT model handed on: merged into the 16-bit base (or kept as its adapter), checked as DPO and eval load it",
        outputs=(MANIFEST,),  # merged weights with sft_handoff: merge, fidelity.json with either; the manifest comes last
        inputs=(BASE_MODEL, StageInput("adapter", "the SFT adapter folder (sft/adapter)", lambda layout, config: layout.sft_adapter, stage=SFT),
                StageInput("sft_train", "SFT training examples the hand-off check scores (needed for QLoRA and sft_handoff: adapter)",
                           sft_train, required=False, stage=SFT_DATA)),
        settings=lambda config: {"training": _training_read_by(config, MERGE), "eval_dtype": config.eval.dtype}, entry=merge,
    ),
)
DPO_STAGES = (
    StageSpec(
        DPO, "train-dpo", "DPO from the SFT model, which is its reference (merged, or the SFT adapter trained on)",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=DPO_INPUTS,
        settings=_training_settings("dpo"), entry=train_dpo_chain, also=tuple(arm.name for arm in DPO_ARMS[1:]),
    ),
    StageSpec(
        DPO_ONLY.name, None, "the DPO-only baseline: the same DPO on the raw base",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=(BASE_MODEL, *PAIR_FILES),
        settings=_training_settings("dpo"), entry=train_dpo, enabled=DPO_ONLY.trained_in_run,
    ),
    *map(_dpo_arm_spec, SOURCE_ARMS),
)
