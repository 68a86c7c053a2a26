"""The table of stages: what each stage reads, writes and is configured by, and how it is started.

``STAGES`` is the only place a stage is wired: its name, the CLI command that runs it alone, the
inputs it reads (named for ``--in NAME=PATH``, and where each lies in a run directory), the outputs
it must leave, the settings its fingerprint covers, and its entry point. ``stage1.pipeline`` (the
``run`` command, a stage inside a run directory, a stage on explicit files, the preflight) and the
CLI (its subcommands, their ``--help`` and ``--in`` checks) all read it. The stage functions live in
their folders; each entry point below only hands them their files. Light to import: stage modules
are imported when a stage runs, so ``--help`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage1.config.load import PipelineConfig
from stage1.core.errors import ConfigError
from stage1.io.layout import (
    ADAPTER_DIR,
    CHART_FILE,
    DPO_ARM_SOURCES,
    MANIFEST,
    MODEL_WEIGHTS_FILE,
    NEGATIVES_FILE,
    PAIRS_EVAL_FILE,
    PAIRS_TRAIN_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    SFT_HELDOUT_FILE,
    SFT_TRAIN_FILE,
    TOKENIZER_FILE,
    RunLayout,
    dpo_arm,
)


@dataclass(frozen=True)
class StageRun:
    """What ``run_pipeline`` tells a step about this run of it.

    Attributes:
        fingerprint: the stage's fingerprint; training stages resume only from checkpoints written
            under the same one (same settings, same upstream stages, same input files).
        forced: named in ``--force``: start over rather than resume.
    """

    fingerprint: str | None
    forced: bool


#: A stage run alone on explicit files: no fingerprint to resume under, nothing forced.
ON_FILES = StageRun(fingerprint=None, forced=False)


@dataclass(frozen=True)
class StageCall:
    """Everything a stage's entry point is given: the config, its named inputs and its output folder."""

    config: PipelineConfig
    inputs: dict[str, Path]
    out_dir: Path
    run: StageRun = ON_FILES
    callbacks: tuple = ()


@dataclass(frozen=True)
class StageInput:
    """One input a stage reads.

    Attributes:
        name: the ``--in NAME=PATH`` name.
        help: one line on what it is, for ``--help`` and errors.
        required: whether a run on files must give it.
        in_run: where it lies in a run: the layout and the config give its path.
        stage: the stage that produces it in a run (its fingerprint then covers that stage's).
        external: a file the user owns (named in the config); a predicate on the config where only
            some settings read it.
        read: whether the stage reads it with this config (a predicate where only some settings
            do); the content of every input read is part of the stage's fingerprint.
        parts: for an input that stands for several files of a run (``evaluate``'s ``run``), the
            files and folders the stage reads from it, by name.
    """

    name: str
    help: str
    in_run: Callable[[RunLayout, PipelineConfig], Path]
    required: bool = True
    stage: str | None = None
    external: bool | Callable[[PipelineConfig], bool] = False
    read: bool | Callable[[PipelineConfig], bool] = True
    parts: Callable[[RunLayout, PipelineConfig], dict[str, Path]] | None = None

    def is_external(self, config: PipelineConfig) -> bool:
        return self.external(config) if callable(self.external) else bool(self.external)

    def reads(self, layout: RunLayout, config: PipelineConfig) -> dict[str, Path]:
        """The files (or folders) whose content the stage reads through this input in a run, by name."""
        if not (self.read(config) if callable(self.read) else self.read):
            return {}
        if self.parts is not None:
            return {f"{self.name}/{part}": path for part, path in self.parts(layout, config).items()}
        return {self.name: self.in_run(layout, config)}


@dataclass(frozen=True)
class StageSpec:
    """One stage of the table (see the module docstring).

    Attributes:
        upstream: stages whose fingerprints this one's covers, beyond those its inputs name (a stage
            that is not built in this run, such as ``model`` under a ``model.path``, is left out).
        also: stages its command also runs inside a run directory (``train-dpo`` trains ``dpo_only`` and the DPO arms too).
        enabled: whether the stage is part of a run with this config.
    """

    name: str
    command: str | None
    help: str
    outputs: tuple[str, ...]
    inputs: tuple[StageInput, ...]
    settings: Callable[[PipelineConfig], Any]
    entry: Callable[[StageCall], Any]
    upstream: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    enabled: Callable[[PipelineConfig], bool] = field(default=lambda config: True)

    def input(self, name: str) -> StageInput:
        return next(spec for spec in self.inputs if spec.name == name)

    @property
    def required_inputs(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs if spec.required)

    @property
    def optional_inputs(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs if not spec.required)


# ---------------------------------------------------------------- entry points (imports happen when a stage runs)


def _build_model(call: StageCall) -> Any:
    from stage1.hf.tiny import build_tiny_qwen

    return build_tiny_qwen(call.out_dir, seed=call.config.model.tiny_seed)


def _sft_data(call: StageCall) -> Any:
    from stage1.sft_data.stage import run_sft_data

    config = call.config
    return run_sft_data(
        config.sft_data,
        instructions_path=call.inputs["instructions"],
        out_dir=call.out_dir,
        model_dir=call.inputs.get("model"),
        exemplars_path=call.inputs.get("exemplars", Path(config.data.exemplars)),
        eval_items_path=call.inputs["eval_items"],
        on_bad_rows=config.run.on_bad_rows,
        backend=config.run.generation_backend,
    )


def _train_sft(call: StageCall) -> Any:
    from stage1.train.sft import run_train_sft

    config = call.config
    return run_train_sft(
        config.training,
        model_dir=call.inputs["model"],
        train_path=call.inputs["train"],
        out_dir=call.out_dir,
        sft_args=dict(config.sft),
        lora_args=dict(config.lora),
        seed=config.run.seed,
        resume=not call.run.forced,
        stage_fingerprint=call.run.fingerprint,
        callbacks=call.callbacks,
    )


def _merge(call: StageCall) -> Any:
    from stage1.train.merge import run_handoff, run_merge

    training = call.config.training
    keep_adapter = training.sft_handoff == "adapter"
    if (keep_adapter or training.quantization != "none") and "sft_train" not in call.inputs:
        raise ConfigError("the SFT model handed on must be checked against its training rows", field="--in",
                          hint="add --in sft_train=<run>/sft_data/train.jsonl")
    handoff = run_handoff if keep_adapter else run_merge
    return handoff(training, model_dir=call.inputs["model"], adapter_dir=call.inputs["adapter"], out_dir=call.out_dir,
                   sft_train_path=call.inputs.get("sft_train"), eval_dtype=call.config.eval.dtype)


def _negatives(call: StageCall) -> Any:
    from stage1.negatives import run_negatives

    config = call.config
    return run_negatives(config.negatives, sft_path=call.inputs["sft"], out_dir=call.out_dir, on_bad_rows=config.run.on_bad_rows)


def _samples(call: StageCall) -> Any:
    from stage1.samples.stage import run_samples

    config = call.config
    return run_samples(
        config.negatives.policy, sft_path=call.inputs["sft"], model_dir=call.inputs["model"], out_dir=call.out_dir,
        backend=config.run.generation_backend, quantization=config.training.quantization, on_bad_rows=config.run.on_bad_rows,
    )


def _pairs(call: StageCall) -> Any:
    from stage1.pairs.stage import run_pairs

    config = call.config
    source = config.negatives.source
    return run_pairs(
        config.pairs,
        sft_path=call.inputs["sft"],
        negatives_path=call.inputs.get("negatives") if source != "policy" else None,
        policy_negatives_path=call.inputs.get("policy_negatives") if source != "rules" else None,
        policy_share=config.negatives.policy_share,
        selection_criteria=config.negatives.policy.selection_criteria if source != "rules" else None,
        out_dir=call.out_dir,
        tokenizer_dir=call.inputs["model"],
        eval_items_path=call.inputs["eval_items"],
        on_bad_rows=config.run.on_bad_rows,
    )


def _pairs_settings(config: PipelineConfig) -> Any:
    """The pairs settings, and under policy or mixed negatives the source and share too (a rules-only
    run keeps the fingerprint it had before negative sources existed)."""
    if config.negatives.source == "rules":
        return config.pairs
    return {"pairs": config.pairs, "negatives_source": config.negatives.source, "policy_share": config.negatives.policy_share,
            "selection_criteria": config.negatives.policy.selection_criteria}


def _train_dpo_chain(call: StageCall, negative_source: str | None = None) -> Any:
    """DPO after SFT: on the merged model, or (``sft_handoff: adapter``) continuing the SFT adapter on
    the base; a DPO arm on ``negative_source``'s pairs only."""
    if call.config.training.sft_handoff != "adapter":
        return _train_dpo(call, negative_source=negative_source)
    if "sft_adapter" not in call.inputs:
        raise ConfigError("training.sft_handoff: adapter trains the SFT adapter on", field="--in",
                          hint="add --in sft_adapter=<run>/sft/adapter and --in model=<the base model>")
    return _train_dpo(call, sft_adapter_dir=call.inputs["sft_adapter"], negative_source=negative_source)


def _train_dpo_arm(source: str) -> Callable[[StageCall], Any]:
    return lambda call: _train_dpo_chain(call, negative_source=source)


def _train_dpo(call: StageCall, sft_adapter_dir: Path | None = None, negative_source: str | None = None) -> Any:
    from stage1.train.dpo import run_train_dpo

    config = call.config
    return run_train_dpo(
        config.training,
        model_dir=call.inputs["model"],
        train_path=call.inputs["train"],
        eval_path=call.inputs["eval"],
        out_dir=call.out_dir,
        dpo_args=dict(config.dpo),
        lora_args=dict(config.lora),
        seed=config.run.seed,
        resume=not call.run.forced,
        stage_fingerprint=call.run.fingerprint,
        callbacks=call.callbacks,
        sft_adapter_dir=sft_adapter_dir,
        negative_source=negative_source,
    )


def _dpo_start(layout: RunLayout, config: PipelineConfig) -> Path:
    """The model DPO loads: the merged SFT model, or the base under ``sft_handoff: adapter``."""
    return layout.model if config.training.sft_handoff == "adapter" else layout.merged


def _evaluate(call: StageCall) -> Any:
    from stage1.eval.settings import settings_for_run, variants_in_run
    from stage1.eval.stage import run_evaluate

    layout = RunLayout(call.inputs["run"], call.config.model.path)
    training = call.config.training
    return run_evaluate(
        settings_for_run(call.config.eval, training.dpo_arms),
        variants=variants_in_run(layout, training.quantization, training.sft_handoff, training.dpo_arms),
        items_path=call.inputs["eval_items"],
        out_dir=call.out_dir,
        training_paths=[layout.sft_train, layout.pairs_train],
    )


# ---------------------------------------------------------------- the table


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
    if config.training.dpo_only:
        parts["dpo_only"] = layout.adapter("dpo_only")
    for source in config.training.dpo_arms:
        parts[dpo_arm(source)] = layout.adapter(dpo_arm(source))
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
                     "dpo_only", "gpu_memory_gib")
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


def _dpo_arm_settings(source: str) -> Callable[[PipelineConfig], dict[str, Any]]:
    return lambda config: {**_training_settings("dpo")(config), "negative_source": source}


EVAL_ITEMS = StageInput(
    "eval_items", "held-out evaluation items (e.g. stage1/pools/eval/items.jsonl): the leakage gate checks against them",
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


def _dpo_arm_spec(source: str) -> StageSpec:
    """A DPO arm (``training.dpo_arms``): ``dpo`` again, from the same SFT model (its reference), on
    ``source``'s pairs of each split only, into its own folder."""
    return StageSpec(
        dpo_arm(source), None, f"a DPO arm: the same DPO from the SFT model on the {source} pairs only (training.dpo_arms)",
        outputs=(ADAPTER_DIR, MANIFEST), inputs=DPO_INPUTS, settings=_dpo_arm_settings(source), entry=_train_dpo_arm(source),
        enabled=lambda config: source in config.training.dpo_arms,
    )


STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "model", None, "the tiny offline Qwen2 base model, built when model.path is not set",
        outputs=(MODEL_WEIGHTS_FILE, TOKENIZER_FILE), inputs=(),
        settings=lambda config: {"tiny_seed": config.model.tiny_seed}, entry=_build_model,
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
        settings=lambda config: config.sft_data, entry=_sft_data,
    ),
    StageSpec(
        "sft", "train-sft", "LoRA/QLoRA SFT with the loss on the response and END",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=(BASE_MODEL, StageInput("train", "SFT training examples (sft_data/train.jsonl)", _sft_train, stage="sft_data")),
        settings=_training_settings("sft"), entry=_train_sft,
    ),
    StageSpec(
        "merge", "merge", "the SFT model handed on: merged into the 16-bit base (or kept as its adapter), checked as DPO and eval load it",
        outputs=(MANIFEST,),  # merged weights with sft_handoff: merge, fidelity.json with either; the manifest comes last
        inputs=(BASE_MODEL, StageInput("adapter", "the SFT adapter folder (sft/adapter)", lambda layout, config: layout.sft_adapter, stage="sft"),
                StageInput("sft_train", "SFT training examples the hand-off check scores (needed for QLoRA and sft_handoff: adapter)",
                           _sft_train, required=False, stage="sft_data")),
        settings=lambda config: {"training": _training_read_by(config, "merge"), "eval_dtype": config.eval.dtype}, entry=_merge,
    ),
    StageSpec(
        "negatives", "negatives", "rule-based negatives of five kinds",
        outputs=(NEGATIVES_FILE, MANIFEST),
        inputs=(StageInput("sft", "SFT training examples (sft_data/train.jsonl)", _sft_train, stage="sft_data"),),
        settings=lambda config: {"negatives": config.negatives, "seed": config.run.seed}, entry=_negatives,
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
        entry=_samples, enabled=lambda config: config.negatives.source != "rules",
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
        settings=_pairs_settings, entry=_pairs,
    ),
    StageSpec(
        "dpo", "train-dpo", "DPO from the SFT model, which is its reference (merged, or the SFT adapter trained on)",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=DPO_INPUTS,
        settings=_training_settings("dpo"), entry=_train_dpo_chain, also=("dpo_only", *map(dpo_arm, DPO_ARM_SOURCES)),
    ),
    StageSpec(
        "dpo_only", None, "the DPO-only baseline: the same DPO on the raw base",
        outputs=(ADAPTER_DIR, MANIFEST),
        inputs=(BASE_MODEL, *PAIR_FILES),
        settings=_training_settings("dpo"), entry=_train_dpo, enabled=lambda config: config.training.dpo_only,
    ),
    *(_dpo_arm_spec(source) for source in DPO_ARM_SOURCES),
    StageSpec(
        "eval", "evaluate", "every variant on the held-out items, scored, compared, reported",
        outputs=(RESULTS_FILE, REPORT_FILE, CHART_FILE, MANIFEST),
        inputs=(StageInput("run", "a run directory holding the variants' models", lambda layout, config: layout.run_dir,
                           parts=_evaluated), EVAL_ITEMS),
        settings=_eval_settings, entry=_evaluate,
        upstream=("model", "sft_data", "merge", "pairs", "dpo", "dpo_only", *map(dpo_arm, DPO_ARM_SOURCES)),
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
