"""How each stage is started: an entry point per stage takes a ``StageCall`` and hands the stage
function in the stage's folder its settings and files.

Each stage module is imported when its stage runs, not when the table is read: the stages import
torch, transformers and TRL, and the CLI reads the table for every ``--help``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stage1.core.errors import ConfigError
from stage1.eval.seeds import run_seed_report  # light: statistics and files, no torch
from stage1.io.layout import DPO, DPO_ONLY, DPOArm, RunLayout
from stage1.organism.build import build_organism  # light: torch is imported only when it trains
from stage1.stages.spec import StageCall


def build_model(call: StageCall) -> Any:
    model = call.config.model
    if model.tiny == "organism":
        return build_organism(call.out_dir, seed=model.tiny_seed, log=logging.getLogger("stage1.organism").info)
    from stage1.hf.tiny import build_tiny_qwen

    return build_tiny_qwen(call.out_dir, seed=model.tiny_seed)


def sft_data(call: StageCall) -> Any:
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


def train_sft(call: StageCall) -> Any:
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


def merge(call: StageCall) -> Any:
    from stage1.train.merge import run_handoff, run_merge

    training = call.config.training
    keep_adapter = training.sft_handoff == "adapter"
    if (keep_adapter or training.quantization != "none") and "sft_train" not in call.inputs:
        raise ConfigError("the SFT model handed on must be checked against its training rows", field="--in",
                          hint="add --in sft_train=<run>/sft_data/train.jsonl")
    handoff = run_handoff if keep_adapter else run_merge
    return handoff(training, model_dir=call.inputs["model"], adapter_dir=call.inputs["adapter"], out_dir=call.out_dir,
                   sft_train_path=call.inputs.get("sft_train"), eval_dtype=call.config.eval.dtype)


def negatives(call: StageCall) -> Any:
    from stage1.negatives import run_negatives

    config = call.config
    return run_negatives(config.negatives, sft_path=call.inputs["sft"], out_dir=call.out_dir, on_bad_rows=config.run.on_bad_rows)


def samples(call: StageCall) -> Any:
    from stage1.samples.stage import run_samples

    config = call.config
    return run_samples(
        config.negatives.policy, sft_path=call.inputs["sft"], model_dir=call.inputs["model"], out_dir=call.out_dir,
        backend=config.run.generation_backend, quantization=config.training.quantization, on_bad_rows=config.run.on_bad_rows,
    )


def pairs(call: StageCall) -> Any:
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


def train_dpo_chain(call: StageCall, arm: DPOArm = DPO) -> Any:
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
        negative_source=arm.pairs_source,
    )


def evaluate(call: StageCall, layout: RunLayout | None = None) -> Any:
    """Evaluation of the run's variants; ``layout``: a further training seed's view of the run
    (``RunLayout.for_seed``), whose own trained models are evaluated."""
    from stage1.eval.settings import settings_for_run, variants_in_run
    from stage1.eval.stage import run_evaluate

    layout = layout or RunLayout(call.inputs["run"], call.config.model.path)
    training = call.config.training
    return run_evaluate(
        settings_for_run(call.config.eval, training.dpo_arms),
        variants=variants_in_run(layout, training.quantization, training.sft_handoff, training.dpo_arms),
        items_path=call.inputs["eval_items"],
        out_dir=call.out_dir,
        training_paths=[layout.sft_train, layout.pairs_train],
    )


def seeds(call: StageCall) -> Any:
    """Every training seed's evaluation of the run (``training.seeds``), read together."""
    config = call.config
    layout = RunLayout(call.inputs["run"], config.model.path)
    results = {seed: (layout if seed == config.run.seed else layout.for_seed(seed)).results for seed in config.training.seeds}
    return run_seed_report(results, call.out_dir, config.eval.confidence)
