"""The ``sft_data`` stage: SFT examples, filtered and split (``stage.run_sft_data``), and its training
file as the stages that read it name it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stage1.io.layout import MANIFEST, SFT_HELDOUT_FILE, SFT_TRAIN_FILE, RunLayout
from stage1.io.stage_spec import EVAL_ITEMS, StageCall, StageInput, StageSpec, data_file
from stage1.organism.spec import STAGE as MODEL
from stage1.organism.spec import base_model
from stage1.sft_data.stage import STAGE, run_sft_data

if TYPE_CHECKING:
    from stage1.stages.config import PipelineConfig


def sft_train(layout: RunLayout, config: PipelineConfig) -> Path:
    """The SFT training examples in a run (``sft_data/train.jsonl``)."""
    return layout.sft_train


def _generates(config: PipelineConfig) -> bool:
    return config.sft_data.source == "model"


def sft_data(call: StageCall) -> Any:
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


STAGES = (
    StageSpec(
        STAGE, "sft-data", "SFT examples: instructions with responses, filtered and split",
        outputs=(SFT_TRAIN_FILE, SFT_HELDOUT_FILE, MANIFEST),
        inputs=(
            StageInput("instructions", "the instruction pool (JSONL, JSON, CSV or a datasets folder; with responses when sft_data.source=file)",
                       data_file("instructions"), external=True),
            EVAL_ITEMS,
            StageInput("model", "the base model that writes responses (sft_data.source=model)", base_model, required=False, stage=MODEL,
                       read=_generates),
            StageInput("exemplars", "few-shot exemplars for sft_data.source=model (default: data.exemplars)",
                       data_file("exemplars"), required=False, external=_generates, read=_generates),
        ),
        settings=lambda config: config.sft_data, entry=sft_data,
    ),
)
