"""The pipeline's configuration: every section, typed, assembled from the stages' declarations.

``stage1.config`` knows how to load, override and check typed sections, and no stage; here each stage's
section (its ``settings.SECTION``) and the library sections the training stages pass through
(``lora`` to PEFT, ``sft``/``dpo`` to TRL) make up the ``SCHEMA``, with the checks that span sections.
A new stage's section is one line of ``SCHEMA`` and one field of ``PipelineConfig``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stage1.config import load
from stage1.config.load import DataSettings, ModelSettings, RunSettings, Schema
from stage1.config.typed import settings_to_dict
from stage1.core.errors import ConfigError
from stage1.eval import settings as eval_settings
from stage1.eval.settings import EvalSettings
from stage1.hf import lora
from stage1.hf.models import model_folder_problem
from stage1.negatives import settings as negatives_settings
from stage1.negatives.settings import NegativeSettings
from stage1.pairs import settings as pairs_settings
from stage1.pairs.settings import PairSettings
from stage1.sft_data import settings as sft_data_settings
from stage1.sft_data.settings import SFTDataSettings
from stage1.train import settings as train_settings
from stage1.train import trainer_config
from stage1.train.settings import TrainingSettings


def check_model_path(sections: Mapping[str, Any]) -> None:
    """A ``model.path`` that exists must be a model folder stage1 can load. One that does not exist
    yet passes: the memory plan is read before the weights are downloaded, and the stage that loads
    the model reports it missing.

    Raises:
        ConfigError: a file, an adapter folder, no config.json or model_type, no safetensors weights.
    """
    path = sections["model"].path
    if path is None or not Path(path).exists():
        return
    problem = model_folder_problem(Path(path))
    if problem is not None:
        message, hint = problem
        raise ConfigError(f"{path}: {message}", field="model.path", hint=hint)


def check_dpo_arms(sections: Mapping[str, Any]) -> None:
    """Each DPO arm trains on its source's pairs of ``pairs/train.jsonl``: only a mixed run has pairs
    of both sources (under ``rules`` or ``policy`` the one arm with pairs would repeat ``dpo``).

    Raises:
        ConfigError: ``training.dpo_arms`` set while ``negatives.source`` is not ``mixed``.
    """
    training, negatives = sections["training"], sections["negatives"]
    if training.dpo_arms and negatives.source != "mixed":
        raise ConfigError(
            f"trains each arm on its source's pairs, but negatives.source: {negatives.source} makes "
            f"{negatives.source} pairs only", field="training.dpo_arms",
            hint="set negatives.source: mixed (pairs from rules and from policy samples), or leave training.dpo_arms empty",
        )


def check_lora_plan(sections: Mapping[str, Any]) -> None:
    """Build PEFT's ``LoraConfig`` now, as the training stages will (cheap, and no global state), so its
    own checks and ``training.require_all_projections`` stop the run before any stage.

    Raises:
        ConfigError: see ``stage1.hf.lora.build_lora_config``.
    """
    lora.build_lora_config(sections["lora"], require_all_projections=sections["training"].require_all_projections)


SCHEMA = Schema(
    sections=(sft_data_settings.SECTION, negatives_settings.SECTION, pairs_settings.SECTION, train_settings.SECTION,
              eval_settings.SECTION),
    library=(lora.SECTION, trainer_config.SFT_SECTION, trainer_config.DPO_SECTION),
    base_checks=(check_model_path,),
    checks=(check_dpo_arms,),
    library_checks=(check_lora_plan,),
)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run needs, resolved and typed: one field per section of ``SCHEMA``."""

    run: RunSettings
    model: ModelSettings
    data: DataSettings
    sft_data: SFTDataSettings
    negatives: NegativeSettings
    pairs: PairSettings
    training: TrainingSettings
    eval: EvalSettings
    lora: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    dpo: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def section(self, name: str) -> Any:
        """A section by its YAML name (``"eval"``), for code that is handed the name."""
        if name not in SCHEMA.names:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        library = {section.name for section in SCHEMA.library}
        return {name: dict(getattr(self, name)) if name in library else settings_to_dict(getattr(self, name))
                for name in SCHEMA.names}


def build_config(data: dict[str, Any], **options: Any) -> PipelineConfig:
    """A raw config mapping typed and checked (``stage1.config.load.build_sections``'s options)."""
    return PipelineConfig(**load.build_sections(data, SCHEMA, **options), source=options.get("source"))


def load_config(preset: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                check_training: bool = True) -> PipelineConfig:
    """Read a preset (name or file), apply ``KEY=VALUE`` overrides, and type everything.

    Raises:
        ConfigError: see ``stage1.config.load.load_sections``.
    """
    sections, source = load.load_sections(SCHEMA, preset, overrides, check_training=check_training)
    return PipelineConfig(**sections, source=source)


def default_dump() -> str:
    """Every typed section at its code defaults, dumped as ``dump_config`` dumps a config (the
    library sections, which have no code defaults, left out): what a setting absent from an older
    run's record is taken to have been. Not ``dump_config(build_config({}))``: that dumps the same
    typed sections, but its checks cost a quarter of a second on every command's start-up."""
    typed = {**load.BASE_SECTIONS, **{section.name: section.settings for section in SCHEMA.sections}}
    return yaml.safe_dump({name: settings_to_dict(cls()) for name, cls in typed.items()}, sort_keys=True, allow_unicode=True)


def dump_config(config: PipelineConfig) -> str:
    """The resolved config as YAML, written into the run directory."""
    return yaml.safe_dump(config.to_dict(), sort_keys=True, allow_unicode=True)

