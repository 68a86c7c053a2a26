"""The ``model`` stage: the tiny offline Qwen2 base model a run builds when ``model.path`` is not set
(random weights, or the organism: ``model.tiny``), and the base model as the stages that read it name it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stage1.hf.tiny import build_tiny_qwen  # light: torch is imported only when it builds
from stage1.io.layout import MODEL_WEIGHTS_FILE, TOKENIZER_FILE, RunLayout
from stage1.io.stage_spec import StageCall, StageInput, StageSpec
from stage1.organism.build import build_organism  # light: torch is imported only when it trains

if TYPE_CHECKING:
    from stage1.stages.config import PipelineConfig

STAGE = "model"


def base_model(layout: RunLayout, config: PipelineConfig) -> Path:
    """The base model folder: ``model.path``, or the one this stage builds into the run."""
    return layout.model


BASE_MODEL = StageInput("model", "the base model folder (safetensors, config.json, tokenizer)", base_model, stage=STAGE)


def _model_settings(config: PipelineConfig) -> dict[str, Any]:
    """The tiny model's seed, and its kind when it is the organism (a random-weight run keeps the
    fingerprint it had before the organism existed)."""
    settings: dict[str, Any] = {"tiny_seed": config.model.tiny_seed}
    if config.model.tiny != "random":
        settings["tiny"] = config.model.tiny
    return settings


def build_tiny(out_dir: str | Path, kind: str, seed: int, log=None) -> Path:
    """The tiny model of ``kind`` (``random`` or ``organism``) written to ``out_dir``: the stage's
    and ``stage1 build-tiny``'s one way to build it."""
    if kind == "organism":
        return build_organism(out_dir, seed=seed, log=log or logging.getLogger("stage1.organism").info)
    return build_tiny_qwen(out_dir, seed=seed)


def build_model(call: StageCall) -> Any:
    return build_tiny(call.out_dir, call.config.model.tiny, call.config.model.tiny_seed)


STAGES = (
    StageSpec(
        STAGE, None, "the tiny offline Qwen2 base model (random or the organism, model.tiny), built when model.path is not set",
        outputs=(MODEL_WEIGHTS_FILE, TOKENIZER_FILE), inputs=(),
        settings=_model_settings, entry=build_model,
        enabled=lambda config: config.model.path is None,
    ),
)
