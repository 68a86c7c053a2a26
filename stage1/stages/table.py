"""The table of stages, in run order, and the ``--in`` checks and help read from it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from stage1.core.errors import ConfigError
from stage1.io.layout import (
    ADAPTER_DIR,
    CHART_FILE,
    DPO_ARMS,
    DPO_ONLY,
    MANIFEST,
    MODEL_WEIGHTS_FILE,
    NEGATIVES_FILE,
    PAIRS_EVAL_FILE,
    PAIRS_TRAIN_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    SEEDS_JSON,
    SEEDS_MD,
    SFT_HELDOUT_FILE,
    SFT_TRAIN_FILE,
    SOURCE_ARMS,
    TOKENIZER_FILE,
    DPOArm,
    RunLayout,
    source_arm,
)
from stage1.stages import entries
from stage1.stages.config import PipelineConfig
from stage1.stages.spec import StageInput, StageSpec

# ---------------------------------------------------------------- where inputs lie, what fingerprints cover


def _data_file(key: str) -> Callable[[RunLayout, PipelineConfig], Path]:
    return lambda layout, config: Path(getattr(config.data, key))


def _model(layout: RunLayout, config: PipelineConfig) -> Path:
    return layout.model


def _sft_train(layout: RunLayout, config: PipelineConfig) -> Path:
    return layout.sft_train


def _generates(config: PipelineConfig) -> bool:
    return config.sft_data.source == "model"


def _evaluated(layout: RunLayout, config: PipelineConfig) -> dict[str, Path]:
    """What evaluation reads from a run: the variants' models and adapters, and the training files
    its leakage gate checks the items against."""
    parts = {"model": layout.model, "merged": layout.merged, "dpo": layout.adapter("dpo"),
             "sft_train": layout.sft_train, "pairs_train": layout.pairs_train}
    if DPO_ONLY.trained_in(config.training):
        parts[DPO_ONLY.name] = layout.adapter(DPO_ONLY.folder)
    for source in config.training.dpo_arms:
        arm = source_arm(source)
        parts[arm.name] = layout.adapter(arm.folder)
    return parts


def _eval_settings(config: PipelineConfig) -> Any:
    """The evaluation settings as this run applies them (``settings_for_run``: the arms' variants and
    comparisons only where arms are trained, so a run without arms keeps its fingerprint)."""
    from stage1.eval.settings import settings_for_run

    return settings_for_run(config.eval, config.training.dpo_arms)


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
    left_out = {"sft": (*DPO_ONLY_TRAINING, *MERGE_ONLY_TRAINING), "merge": DPO_ONLY_TRAINING}.get(stage, ())
    return {key: value for key, value in config.training.recorded().items() if key not in left_out}


def former_settings(stage: str, config: PipelineConfig) -> Any | None:
    """A stage's settings as the previous release fingerprinted them (every ``training`` key), or None
    where nothing changed: a run recorded under that rule stays up to date instead of retraining."""
    if stage == "sft":
        return {"training": config.training.recorded(), "sft": config.sft, "lora": config.lora, "seed": config.run.seed}
    if stage == "merge":
        return {"training": config.training.recorded(), "eval_dtype": config.eval.dtype}
    return None


def _training_settings(section: str) -> Callable[[PipelineConfig], dict[str, Any]]:
    return lambda config: {"training": _training_read_by(config, section), section: config.section(section), "lora": config.lora,
                           "seed": config.run.seed}


def _dpo_arm_settings(arm: DPOArm) -> Callable[[PipelineConfig], dict[str, Any]]:
    return lambda config: {**_training_settings("dpo")(config), "negative_source": arm.pairs_source}


def _pairs_settings(config: PipelineConfig) -> Any:
    """The pairs settings, and under policy or mixed negatives the source and share too (a rules-only
    run keeps the fingerprint it had before negative sources existed)."""
    if config.negatives.source == "rules":
        return config.pairs
    return {"pairs": config.pairs, "negatives_source": config.negatives.source, "policy_share": config.negatives.policy_share,
            "selection_criteria": config.negatives.policy.selection_criteria}


def _dpo_start(layout: RunLayout, config: PipelineConfig) -> Path:
    """The model DPO loads: the merged SFT model, or the base under ``sft_handoff: adapter``."""
    return layout.model if config.training.sft_handoff == "adapter" else layout.merged


# ---------------------------------------------------------------- the table


EVAL_ITEMS = StageInput(
    "eval_items", "held-out evaluation items (the shipped ones: --in eval_items=items): the leakage gate checks against them",
    _data_file("eval_items"), external=True,
)
BASE_MODEL = StageInput("model", "the base model folder (safetensors, config.json, tokenizer)", _model, stage="model")
PAIR_FILES = (
    StageInput("train", "training preference pairs (pairs/train.jsonl: prompt, chosen, rejected)", lambda layout, config: layout.pairs_train, stage="pairs"),
    StageInput("eval", "held-out preference pairs (pairs/eval.jsonl)", lambda layout, config: layout.pairs_eval, stage="pairs"),
)
#: What ``dpo`` and each DPO arm read.
DPO_INPUTS = (
    StageInput("model", "the model DPO starts from (the merged SFT model; the base with sft_handoff: adapter)", _dpo_start, stage="merge"),
    *PAIR_FILES,
    StageInput("sft_adapter", "the SFT adapter DPO trains on (sft/adapter; sft_handoff: adapter)",
               lambda layout, config: layout.sft_adapter, required=False, stage="sft",
               # Read only when DPO continues it; after a merge, DPO reads the merged model.
               read=lambda config: config.training.sft_handoff == "adapter"),
)


def _dpo_arm_spec(arm: DPOArm) -> StageSpec:
    """A DPO arm (``training.dpo_arms``): ``dpo`` again, from the same SFT model (its reference), on
    one source's pairs of each split only, into its own folder."""
    return StageSpec(
        arm.name, None, f"a DPO arm: the same DPO from the SFT model on the {arm.pairs_source} pairs only (training.dpo_arms)",
        outputs=(ADAPTER_DIR, MANIFEST), inputs=DPO_INPUTS, settings=_dpo_arm_settings(arm), entry=entries.train_dpo_arm(arm),
        enabled=arm.trained_in_run,
    )


def _seed_results(layout: RunLayout, config: PipelineConfig) -> dict[str, Path]:
    """Each training seed's ``results.json``: the run's own for ``run.seed``, ``seeds/seed-<s>/`` for the others."""
    return {f"seed_{seed}": (layout if seed == config.run.seed else layout.for_seed(seed)).results for seed in config.training.seeds}


def _model_settings(config: PipelineConfig) -> dict[str, Any]:
    """The tiny model's seed, and its kind when it is the organism (a random-weight run keeps the
    fingerprint it had before the organism existed)."""
    settings: dict[str, Any] = {"tiny_seed": config.model.tiny_seed}
    if config.model.tiny != "random":
        settings["tiny"] = config.model.tiny
    return settings


STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "model", None, "the tiny offline Qwen2 base model (random or the organism, model.tiny), built when model.path is not set",
        outputs=(MODEL_WEIGHTS_FILE, TOKENIZER_FILE), inputs=(),
        settings=_model_settings, entry=entries.build_model,
        enabled=lambda config: config.model.path is None,
    ),
    StageSpec(
        "sft_data", "sft-data", "SFT examples: instructions with responses, filtered and split",
        outputs=(SFT_TRAIN_FILE, SFT_HELDOUT_FILE, MANIFEST),
        inputs=(
            StageInput("instructions", "the instruction pool (JSONL, JSON, CSV or a datasets folder; with responses when sft_data.source=file)",
                       _data_file("instructions"), external=True),
            EVAL_ITEMS,
            StageInput("model", "the base model that writes responses (sft_data.source=model)", _model, required=False, stage="model",
                       read=_generates),
            StageInput("exemplars", "few-shot exemplars for sft_data.source=model (default: data.exemplars)",
                       _data_file("exemplars"), required=False, external=_generates, read=_generates),
        ),
        settings=lambda config: config.sft_data, entry=entries.sft_data,
    ),
    StageSpec(
        "sft", "train-sft", "LoRA/QLoRA SFT with the loss on the response and END",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=(BASE_MODEL, StageInput("train", "SFT training examples (sft_data/train.jsonl)", _sft_train, stage="sft_data")),
        settings=_training_settings("sft"), entry=entries.train_sft,
    ),
    StageSpec(
        "merge", "merge", "the SFT model handed on: merged into the 16-bit base (or kept as its adapter), checked as DPO and eval load it",
        outputs=(MANIFEST,),  # merged weights with sft_handoff: merge, fidelity.json with either; the manifest comes last
        inputs=(BASE_MODEL, StageInput("adapter", "the SFT adapter folder (sft/adapter)", lambda layout, config: layout.sft_adapter, stage="sft"),
                StageInput("sft_train", "SFT training examples the hand-off check scores (needed for QLoRA and sft_handoff: adapter)",
                           _sft_train, required=False, stage="sft_data")),
        settings=lambda config: {"training": _training_read_by(config, "merge"), "eval_dtype": config.eval.dtype}, entry=entries.merge,
    ),
    StageSpec(
        "negatives", "negatives", "rule-based negatives of five kinds",
        outputs=(NEGATIVES_FILE, MANIFEST),
        inputs=(StageInput("sft", "SFT training examples (sft_data/train.jsonl)", _sft_train, stage="sft_data"),),
        settings=lambda config: {"negatives": config.negatives, "seed": config.run.seed}, entry=entries.negatives,
        enabled=lambda config: config.negatives.source != "policy",
    ),
    StageSpec(
        "samples", "samples", "k samples per training instruction from the merged SFT model, scored by the criteria: policy negatives",
        outputs=("samples.jsonl", "negatives.jsonl", MANIFEST),
        inputs=(
            StageInput("sft", "SFT training examples (sft_data/train.jsonl): the instructions and reference answers", _sft_train,
                       stage="sft_data"),
            StageInput("model", "the merged SFT model that samples (merged/)", lambda layout, config: layout.merged, stage="merge"),
        ),
        settings=lambda config: {"policy": config.negatives.policy, "quantization": config.training.quantization,
                                 "backend": config.run.generation_backend},
        entry=entries.samples, enabled=lambda config: config.negatives.source != "rules",
    ),
    StageSpec(
        "pairs", "pairs", "DPO preference pairs (train / eval), split by instruction",
        outputs=(PAIRS_TRAIN_FILE, PAIRS_EVAL_FILE, MANIFEST),
        inputs=(
            StageInput("sft", "SFT training examples (sft_data/train.jsonl): the chosen responses", _sft_train, stage="sft_data"),
            StageInput("negatives", "rule-made negatives (negatives/negatives.jsonl): the rejected responses (negatives.source rules or mixed)",
                       lambda layout, config: layout.negatives, required=False, stage="negatives"),
            StageInput("policy_negatives", "policy negatives (samples/negatives.jsonl; negatives.source policy or mixed)",
                       lambda layout, config: layout.policy_negatives, required=False, stage="samples"),
            # The tokenizer only measures lengths, but another model folder is another tokenizer.
            StageInput("model", "a model folder whose tokenizer measures pair lengths", _model),
            EVAL_ITEMS,
        ),
        settings=_pairs_settings, entry=entries.pairs,
    ),
    StageSpec(
        "dpo", "train-dpo", "DPO from the SFT model, which is its reference (merged, or the SFT adapter trained on)",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=DPO_INPUTS,
        settings=_training_settings("dpo"), entry=entries.train_dpo_chain, also=tuple(arm.name for arm in DPO_ARMS[1:]),
    ),
    StageSpec(
        DPO_ONLY.name, None, "the DPO-only baseline: the same DPO on the raw base",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=(BASE_MODEL, *PAIR_FILES),
        settings=_training_settings("dpo"), entry=entries.train_dpo, enabled=DPO_ONLY.trained_in_run,
    ),
    *map(_dpo_arm_spec, SOURCE_ARMS),
    StageSpec(
        "eval", "evaluate", "every variant on the held-out items, scored, compared, reported",
        outputs=(RESULTS_FILE, REPORT_FILE, CHART_FILE, MANIFEST),
        inputs=(StageInput("run", "a run directory holding the variants' models", lambda layout, config: layout.run_dir,
                           parts=_evaluated), EVAL_ITEMS),
        settings=_eval_settings, entry=entries.evaluate,
        upstream=("model", "sft_data", "merge", "pairs", *(arm.name for arm in DPO_ARMS)), also=("seeds",),
    ),
    StageSpec(
        "seeds", None, "every training seed's evaluation read together: rates and lifts as mean and spread over seeds (training.seeds)",
        outputs=(SEEDS_JSON, SEEDS_MD, MANIFEST),
        inputs=(StageInput("run", "a run directory holding each training seed's evaluation", lambda layout, config: layout.run_dir,
                           parts=_seed_results),),
        settings=lambda config: {"seeds": config.training.seeds, "confidence": config.eval.confidence}, entry=entries.seeds,
        upstream=("eval",), enabled=lambda config: len(config.training.seeds) > 1,
    ),
)
STAGES_BY_NAME = {spec.name: spec for spec in STAGES}
#: Every stage name, in run order; ``--force`` and ``only`` name stages from this list.
STAGE_NAMES = tuple(spec.name for spec in STAGES)
#: CLI subcommand -> stage.
STAGE_COMMANDS = {spec.command: spec.name for spec in STAGES if spec.command}


# ---------------------------------------------------------------- --in names


def inputs_help(stage: str) -> str:
    """The ``--in`` names a stage reads, one line each, for its ``--help``."""
    spec = STAGES_BY_NAME[stage]
    lines = [f"  --in {item.name}=PATH  {'(required)' if item.required else '(optional)'} {item.help}" for item in spec.inputs]
    return "inputs (with --out, the stage runs on these files instead of a run directory):\n" + "\n".join(lines)


def check_stage_inputs(stage: str, names: Iterable[str]) -> None:
    """Refuse input names the stage does not read, and missing required ones.

    Raises:
        ConfigError: naming the unknown or missing names and every name the stage takes.
    """
    spec = STAGES_BY_NAME[stage]
    required, optional = spec.required_inputs, spec.optional_inputs
    takes = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
    given = list(names)
    unknown = [name for name in given if name not in required + optional]
    if unknown:
        raise ConfigError(f"this stage reads no input named {', '.join(map(repr, unknown))}", field="--in", hint=f"it takes: {takes}")
    missing = [name for name in required if name not in given]
    if missing:
        hint = f"this stage reads: {takes}"
        if "eval_items" in missing:
            hint += f"; eval_items are the {EVAL_ITEMS.help}"
        raise ConfigError(f"missing --in for {', '.join(missing)}", field="--in", hint=hint)
