"""Run one stage alone on explicit files (``--in NAME=PATH ... --out DIR``), outside any run directory."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stage1.config import PipelineConfig
from stage1.errors import ConfigError

# Required inputs per stage. eval_items is required wherever a leakage gate runs (sft_data, pairs):
# the gate fails closed, and a stage run without the evaluation items would record no check at all.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "sft_data": ("instructions", "eval_items"),
    "sft": ("model", "train"),
    "merge": ("model", "adapter"),
    "negatives": ("sft",),
    "pairs": ("sft", "negatives", "model", "eval_items"),
    "dpo": ("model", "train", "eval"),
    "eval": ("run", "eval_items"),
}
# Inputs read when given.
OPTIONAL_INPUTS: dict[str, tuple[str, ...]] = {
    "sft_data": ("model", "exemplars"),
    "merge": ("sft_train",),  # the SFT rows the fidelity check scores; required for QLoRA and sft_handoff: adapter
    "dpo": ("sft_adapter",),  # sft_handoff: adapter: the SFT adapter DPO goes on training (model = the base)
}


def check_stage_inputs(stage: str, names: Iterable[str]) -> None:
    """Refuse input names the stage does not read, and missing required ones.

    Raises:
        ConfigError: naming the unknown or missing names and every name the stage takes.
    """
    required = STAGE_INPUTS[stage]
    known = required + OPTIONAL_INPUTS.get(stage, ())
    takes = ", ".join(required) + (f" (optional: {', '.join(OPTIONAL_INPUTS[stage])})" if stage in OPTIONAL_INPUTS else "")
    given = list(names)
    unknown = [name for name in given if name not in known]
    if unknown:
        raise ConfigError(f"this stage reads no input named {', '.join(map(repr, unknown))}", field="--in", hint=f"it takes: {takes}")
    missing = [name for name in required if name not in given]
    if missing:
        hint = f"this stage reads: {takes}"
        if "eval_items" in missing:
            hint += "; eval_items are the held-out evaluation items the leakage gate checks against (e.g. fixtures/eval/items.jsonl)"
        raise ConfigError(f"missing --in for {', '.join(missing)}", field="--in", hint=hint)


def run_stage_on_files(stage: str, config: PipelineConfig, inputs: dict[str, Path], out_dir: Path) -> Any:
    """Call the stage's entry function with these files; the stage writes into ``out_dir``.

    Raises:
        ConfigError: an input name the stage does not read, or a required one missing.
    """
    check_stage_inputs(stage, inputs)
    seed = config.run.seed
    training = config.section("training")
    if stage == "sft_data":
        from stage1.sft_data import run_sft_data

        return run_sft_data(
            config.section("sft_data"),
            instructions_path=inputs["instructions"],
            out_dir=out_dir,
            model_dir=inputs.get("model"),
            exemplars_path=inputs.get("exemplars", Path(config.data.exemplars)),
            eval_items_path=inputs["eval_items"],
            on_bad_rows=config.run.on_bad_rows,
            backend=config.run.generation_backend,
        )
    if stage == "sft":
        from stage1.train_sft import run_train_sft

        return run_train_sft(
            training, model_dir=inputs["model"], train_path=inputs["train"], out_dir=out_dir,
            sft_args=dict(config.sft), lora_args=dict(config.lora), seed=seed,
        )
    if stage == "merge":
        from stage1.merge import run_handoff, run_merge

        keep_adapter = training.sft_handoff == "adapter"
        if (keep_adapter or training.quantization != "none") and "sft_train" not in inputs:
            raise ConfigError("the SFT model handed on must be checked against its training rows", field="--in",
                              hint="add --in sft_train=<run>/sft_data/train.jsonl")
        handoff = run_handoff if keep_adapter else run_merge
        return handoff(training, model_dir=inputs["model"], adapter_dir=inputs["adapter"], out_dir=out_dir,
                       sft_train_path=inputs.get("sft_train"), eval_dtype=config.section("eval").dtype)
    if stage == "negatives":
        from stage1.negatives import run_negatives

        return run_negatives(config.section("negatives"), sft_path=inputs["sft"], out_dir=out_dir)
    if stage == "pairs":
        from stage1.pairs import run_pairs

        return run_pairs(
            config.section("pairs"), sft_path=inputs["sft"], negatives_path=inputs["negatives"], out_dir=out_dir,
            tokenizer_dir=inputs["model"], eval_items_path=inputs["eval_items"],
        )
    if stage == "dpo":
        from stage1.train_dpo import run_train_dpo

        return run_train_dpo(
            training, model_dir=inputs["model"], train_path=inputs["train"], eval_path=inputs["eval"],
            out_dir=out_dir, dpo_args=dict(config.dpo), lora_args=dict(config.lora), seed=seed,
            sft_adapter_dir=inputs.get("sft_adapter"),
        )
    if stage == "eval":
        from stage1.evaluate import run_evaluate
        from stage1.pipeline import Paths, variant_specs

        run_dir = inputs["run"]
        return run_evaluate(
            config.section("eval"), variants=variant_specs(Paths(run_dir, config), config),
            items_path=inputs["eval_items"], out_dir=out_dir,
            training_paths=[run_dir / "sft_data" / "train.jsonl", run_dir / "pairs" / "train.jsonl"],
        )
    raise ValueError(f"unknown stage {stage!r}")
