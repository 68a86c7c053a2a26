"""The evaluation stages: ``eval`` (every variant of the run on the held-out items, scored, compared,
reported: ``stage.run_evaluate``) and ``seeds`` (every training seed's evaluation read together:
``seeds.run_seed_report``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stage1.eval import stage as eval_stage  # looked up when the entry runs: tests stand in for run_evaluate
from stage1.eval.seeds import STAGE as SEEDS
from stage1.eval.seeds import run_seed_report
from stage1.eval.settings import settings_for_run, variants_in_run
from stage1.eval.stage import STAGE
from stage1.io.layout import (
    CHART_FILE,
    DPO_ARMS,
    DPO_ONLY,
    MANIFEST,
    REPORT_FILE,
    RESULTS_FILE,
    SEEDS_JSON,
    SEEDS_MD,
    RunLayout,
    source_arm,
)
from stage1.io.stage_spec import EVAL_ITEMS, StageCall, StageInput, StageSpec
from stage1.organism.spec import STAGE as MODEL
from stage1.pairs.spec import STAGE as PAIRS
from stage1.sft_data.spec import STAGE as SFT_DATA
from stage1.train.merge import STAGE as MERGE

if TYPE_CHECKING:
    from stage1.stages.config import PipelineConfig


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
    return settings_for_run(config.eval, config.training.dpo_arms)


def _results_by_seed(layout: RunLayout, config: PipelineConfig) -> dict[int, Path]:
    """Each training seed's ``results.json``: the run's own for ``run.seed``, ``seeds/seed-<s>/`` for the others."""
    return {seed: (layout if seed == config.run.seed else layout.for_seed(seed)).results for seed in config.training.seeds}


def _seed_results(layout: RunLayout, config: PipelineConfig) -> dict[str, Path]:
    """``_results_by_seed`` as the seeds stage's named input parts."""
    return {f"seed_{seed}": path for seed, path in _results_by_seed(layout, config).items()}


def evaluate(call: StageCall, layout: RunLayout | None = None) -> Any:
    """Evaluation of the run's variants; ``layout``: a further training seed's view of the run
    (``RunLayout.for_seed``), whose own trained models are evaluated."""
    layout = layout or RunLayout(call.inputs["run"], call.config.model.path)
    training = call.config.training
    return eval_stage.run_evaluate(
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
    return run_seed_report(_results_by_seed(layout, config), call.out_dir, config.eval.confidence)


STAGES = (
    StageSpec(
        STAGE, "evaluate", "every variant on the held-out items, scored, compared, reported",
        outputs=(RESULTS_FILE, REPORT_FILE, CHART_FILE, MANIFEST),
        inputs=(StageInput("run", "a run directory holding the variants' models", lambda layout, config: layout.run_dir,
                           parts=_evaluated), EVAL_ITEMS),
        settings=_eval_settings, entry=evaluate,
        upstream=(MODEL, SFT_DATA, MERGE, PAIRS, *(arm.name for arm in DPO_ARMS)), also=(SEEDS,),
    ),
    StageSpec(
        SEEDS, None, "every training seed's evaluation read together: rates and lifts as mean and spread over seeds (training.seeds)",
        outputs=(SEEDS_JSON, SEEDS_MD, MANIFEST),
        inputs=(StageInput("run", "a run directory holding each training seed's evaluation", lambda layout, config: layout.run_dir,
                           parts=_seed_results),),
        settings=lambda config: {"seeds": config.training.seeds, "confidence": config.eval.confidence}, entry=seeds,
        upstream=(STAGE,), enabled=lambda config: len(config.training.seeds) > 1,
    ),
)
