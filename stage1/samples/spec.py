"""The ``samples`` stage: policy negatives, k samples per training instruction from the merged SFT
model scored by the criteria (``stage.run_samples``)."""

from __future__ import annotations

from typing import Any

from stage1.io.layout import MANIFEST
from stage1.io.stage_spec import StageCall, StageInput, StageSpec
from stage1.samples.stage import STAGE, run_samples
from stage1.sft_data.spec import STAGE as SFT_DATA
from stage1.sft_data.spec import sft_train


def samples(call: StageCall) -> Any:
    config = call.config
    return run_samples(
        config.negatives.policy, sft_path=call.inputs["sft"], model_dir=call.inputs["model"], out_dir=call.out_dir,
        backend=config.run.generation_backend, quantization=config.training.quantization, on_bad_rows=config.run.on_bad_rows,
    )


STAGES = (
    StageSpec(
        STAGE, "samples", "k samples per training instruction from the merged SFT model, scored by the criteria: policy negatives",
        outputs=("samples.jsonl", "negatives.jsonl", MANIFEST),
        inputs=(
            StageInput("sft", "SFT training examples (sft_data/train.jsonl): the instructions and reference answers", sft_train,
                       stage=SFT_DATA),
            # "merge" is written out: train/spec.py imports pairs/, which imports negatives/ and samples/.
            StageInput("model", "the merged SFT model that samples (merged/)", lambda layout, config: layout.merged, stage="merge"),
        ),
        settings=lambda config: {"policy": config.negatives.policy, "quantization": config.training.quantization,
                                 "backend": config.run.generation_backend},
        entry=samples, enabled=lambda config: config.negatives.source != "rules",
    ),
)
