"""The ``pairs`` stage: DPO preference pairs from the SFT examples and the negatives (``stage.run_pairs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stage1.io.layout import MANIFEST, PAIRS_EVAL_FILE, PAIRS_TRAIN_FILE
from stage1.io.stage_spec import EVAL_ITEMS, StageCall, StageInput, StageSpec
from stage1.negatives.spec import STAGE as NEGATIVES
from stage1.organism.spec import base_model
from stage1.pairs.stage import STAGE, run_pairs
from stage1.samples.spec import STAGE as SAMPLES
from stage1.sft_data.spec import STAGE as SFT_DATA
from stage1.sft_data.spec import sft_train

if TYPE_CHECKING:
    from stage1.stages.config import PipelineConfig


def _pairs_settings(config: PipelineConfig) -> Any:
    """The pairs settings, and under policy or mixed negatives the source and share too (a rules-only
    run keeps the fingerprint it had before negative sources existed)."""
    if config.negatives.source == "rules":
        return config.pairs
    return {"pairs": config.pairs, "negatives_source": config.negatives.source, "policy_share": config.negatives.policy_share,
            "selection_criteria": config.negatives.policy.selection_criteria}


def pairs(call: StageCall) -> Any:
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


STAGES = (
    StageSpec(
        STAGE, "pairs", "DPO preference pairs (train / eval), split by instruction",
        outputs=(PAIRS_TRAIN_FILE, PAIRS_EVAL_FILE, MANIFEST),
        inputs=(
            StageInput("sft", "SFT training examples (sft_data/train.jsonl): the chosen responses", sft_train, stage=SFT_DATA),
            StageInput("negatives", "rule-made negatives (negatives/negatives.jsonl): the rejected responses (negatives.source rules or mixed)",
                       lambda layout, config: layout.negatives, required=False, stage=NEGATIVES),
            StageInput("policy_negatives", "policy negatives (samples/negatives.jsonl; negatives.source policy or mixed)",
                       lambda layout, config: layout.policy_negatives, required=False, stage=SAMPLES),
            # The tokenizer only measures lengths, but another model folder is another tokenizer.
            StageInput("model", "a model folder whose tokenizer measures pair lengths", base_model),
            EVAL_ITEMS,
        ),
        settings=_pairs_settings, entry=pairs,
    ),
)
