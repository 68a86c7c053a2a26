"""The ``negatives`` stage: rule-based negatives of the SFT examples (``stage.run_negatives``)."""

from __future__ import annotations

from typing import Any

from stage1.io.layout import MANIFEST, NEGATIVES_FILE
from stage1.io.stage_spec import StageCall, StageInput, StageSpec
from stage1.negatives import stage as negatives_stage  # looked up when the entry runs: tests wrap run_negatives
from stage1.negatives.stage import STAGE
from stage1.sft_data.spec import STAGE as SFT_DATA
from stage1.sft_data.spec import sft_train


def negatives(call: StageCall) -> Any:
    config = call.config
    return negatives_stage.run_negatives(config.negatives, sft_path=call.inputs["sft"], out_dir=call.out_dir, on_bad_rows=config.run.on_bad_rows)


STAGES = (
    StageSpec(
        STAGE, "negatives", "rule-based negatives of five kinds",
        outputs=(NEGATIVES_FILE, MANIFEST),
        inputs=(StageInput("sft", "SFT training examples (sft_data/train.jsonl)", sft_train, stage=SFT_DATA),),
        settings=lambda config: {"negatives": config.negatives, "seed": config.run.seed}, entry=negatives,
        enabled=lambda config: config.negatives.source != "policy",
    ),
)
