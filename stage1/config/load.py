"""The pipeline's configuration: YAML presets, dotted overrides, typed sections.

Sections and who owns their fields:
- ``run``, ``model``, ``data``: this module (frozen dataclasses below);
- ``sft_data``, ``negatives``, ``pairs``, ``training``, ``eval``: the stage modules' own settings;
- ``lora``, ``sft``, ``dpo``: passed straight through to PEFT's ``LoraConfig`` and TRL's
  ``SFTConfig``/``DPOConfig``. Their keys are checked against those dataclasses' fields, so every knob
  TRL has is available without being declared twice here, and a typo is refused with the nearest name.

YAML is read with ``yaml.safe_load`` semantics (no tags, no code), as UTF-8, and a key given twice is
refused; override values are parsed the same way. Values are range-checked here, so a config that
cannot train stops before any stage runs. Errors name the dotted key and where its value came from:
the file and line, or the ``--set`` argument.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from stage1.config.typed import settings_from_dict, settings_to_dict, unknown_key_error

if TYPE_CHECKING:  # the stage settings are imported when a config is built (STAGE_SECTIONS)
    from stage1.eval.settings import EvalSettings
    from stage1.negatives.settings import NegativeSettings
    from stage1.pairs.settings import PairSettings
    from stage1.sft_data.settings import SFTDataSettings
    from stage1.train.settings import TrainingSettings
from stage1.config.overrides import Origins, apply_override, as_number, parse_override
from stage1.config.presets import PATH_KEYS, POOLS_DIR, resolve_file_paths, resolve_preset
from stage1.config.yaml_lines import read_yaml
from stage1.core.errors import ConfigError
from stage1.io.layout import DEFAULT_LOG_FILE


@dataclass(frozen=True)
class RunSettings:
    """Run-wide settings."""

    seed: int = 0  # one seed for every stage (each stage derives its own generator from it)
    on_bad_rows: Literal["stop", "skip"] = "stop"  # a bad input row stops the stage, or is skipped and counted
    generation_backend: Literal["transformers", "vllm"] = "transformers"  # SFT data and evaluation generation
    log_file: str = DEFAULT_LOG_FILE  # inside the run directory


@dataclass(frozen=True)
class ModelSettings:
    """The base model."""

    path: str | None = None  # a local model folder; None builds the tiny offline Qwen2 into <run>/model
    tiny_seed: int = 0  # seed of the tiny model's weights (and of the organism's corpus and pretraining)
    tiny: Literal["random", "organism"] = "random"  # the tiny model built when path is null: random weights (plumbing only), or the organism pretrained on the pools' facts (docs/notes/organism.md)
    architecture: str | None = None  # a config.json-style file for the memory plan when no weights are present
    trust_remote_code: bool = False  # only a user's explicit choice turns this on


@dataclass(frozen=True)
class DataSettings:
    """Input files (a relative path in a config file is relative to that file's folder; see ``PATH_KEYS``)."""

    instructions: str = str(POOLS_DIR / "sft" / "instructions.jsonl")  # instruction pool (with responses when sft_data.source=file)
    exemplars: str = str(POOLS_DIR / "sft" / "exemplars.jsonl")  # few-shot exemplars for sft_data.source=model
    eval_items: str = str(POOLS_DIR / "eval" / "items.jsonl")  # held-out evaluation items (reference answers, constraints)


# section name -> (module, class) of the stage that owns it; imported lazily so `--help` stays instant.
STAGE_SECTIONS: dict[str, tuple[str, str]] = {
    "sft_data": ("stage1.sft_data.settings", "SFTDataSettings"),
    "negatives": ("stage1.negatives.settings", "NegativeSettings"),
    "pairs": ("stage1.pairs.settings", "PairSettings"),
    "training": ("stage1.train.settings", "TrainingSettings"),
    "eval": ("stage1.eval.settings", "EvalSettings"),
}
LOCAL_SECTIONS: dict[str, type] = {"run": RunSettings, "model": ModelSettings, "data": DataSettings}
PASSTHROUGH_SECTIONS: dict[str, tuple[str, str]] = {
    "lora": ("peft", "LoraConfig"),
    "sft": ("trl", "SFTConfig"),
    "dpo": ("trl", "DPOConfig"),
}
# Keys the pipeline sets itself; a user value would be overwritten, so it is refused instead.
PIPELINE_OWNED_KEYS = {"output_dir", "task_type"}
ALL_SECTIONS = (*LOCAL_SECTIONS, *STAGE_SECTIONS, *PASSTHROUGH_SECTIONS)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run needs, resolved and typed: one field per section.

    The stage sections are typed by their stages' settings classes (``STAGE_SECTIONS``), imported when
    a config is built so that ``--help`` stays instant.
    """

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
        if name not in ALL_SECTIONS:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = {name: settings_to_dict(getattr(self, name)) for name in (*LOCAL_SECTIONS, *STAGE_SECTIONS)}
        plain.update({name: dict(getattr(self, name)) for name in PASSTHROUGH_SECTIONS})
        return plain


# ---------------------------------------------------------------- sections


def _load_class(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name)


def passthrough_fields(section: str) -> dict[str, dataclasses.Field]:
    module, name = PASSTHROUGH_SECTIONS[section]
    return {f.name: f for f in dataclasses.fields(_load_class(module, name)) if f.init}


def _stage_owned_keys(section: str) -> dict[str, str]:
    """Keys of a passthrough section that the training stage sets itself (so they are refused here,
    before any stage runs, instead of when training starts), with the setting to use instead."""
    if section == "lora":
        from stage1.hf.lora import LORA_OWNED

        return {key: "the training stage sets it" for key in LORA_OWNED}
    from stage1.train.trainer_config import OWNED_KEYS

    return dict(OWNED_KEYS)


def _check_passthrough(section: str, values: Any, origins: Origins) -> dict[str, Any]:
    """A ``lora:``/``sft:``/``dpo:`` section with known keys, numbers where TRL/PEFT want numbers, and
    the ranges of ``stage1.hf.lora.LORA_RULES`` / ``stage1.train.trainer_config.TRAINER_RULES``.

    Raises:
        ConfigError: an unknown or stage-owned key, a wrong type, a value out of range.
    """
    from stage1.hf.lora import check_lora_values
    from stage1.train.trainer_config import RENAMED_KEYS, check_trainer_values

    if not isinstance(values, dict):
        raise ConfigError("expected a mapping", field=section, **origins.of(section))
    known = passthrough_fields(section)
    owned = _stage_owned_keys(section)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{section}.{key}"
        where = origins.of(dotted)
        if key in PIPELINE_OWNED_KEYS or key in owned:
            raise ConfigError("is set by the pipeline", field=dotted, hint=owned.get(key) or "remove it", **where)
        if key not in known:
            hint = RENAMED_KEYS.get(key) if section != "lora" else None
            raise ConfigError("unknown key", field=dotted, hint=hint or unknown_key_error(key, known, section).hint, **where)
        checked[key] = value = as_number(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"must be a finite number, got {value!r}", field=dotted, **where)
        default = known[key].default
        if value is None and "None" in str(known[key].type):
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"expected a boolean, got {value!r}", field=dotted, **where)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"expected a number, got {value!r}", field=dotted, **where)
    try:
        if section == "lora":
            return check_lora_values(checked)
        check_trainer_values(section, checked)
    except ConfigError as error:
        raise origins.locate(error) from None
    return checked


def _check_lora_plan(lora: dict[str, Any], training: Any, origins: Origins) -> None:
    """Build PEFT's ``LoraConfig`` now, as the training stages will (cheap, and no global state), so its
    own checks and ``training.require_all_projections`` stop the run before any stage.

    Raises:
        ConfigError: see ``stage1.hf.lora.build_lora_config``.
    """
    from stage1.hf.lora import build_lora_config

    try:
        build_lora_config(lora, require_all_projections=training.require_all_projections)
    except ConfigError as error:
        raise origins.locate(error) from None


def _check_dpo_arms(training: Any, negatives: Any, origins: Origins) -> None:
    """Each DPO arm trains on its source's pairs of ``pairs/train.jsonl``: only a mixed run has pairs
    of both sources (under ``rules`` or ``policy`` the one arm with pairs would repeat ``dpo``).

    Raises:
        ConfigError: ``training.dpo_arms`` set while ``negatives.source`` is not ``mixed``.
    """
    if training.dpo_arms and negatives.source != "mixed":
        raise ConfigError(
            f"trains each arm on its source's pairs, but negatives.source: {negatives.source} makes "
            f"{negatives.source} pairs only", field="training.dpo_arms",
            hint="set negatives.source: mixed (pairs from rules and from policy samples), or leave training.dpo_arms empty",
            **origins.of("training.dpo_arms"),
        )


def _check_empty_paths(local: dict[str, Any], origins: Origins) -> None:
    """Refuse a path setting given as an empty string (``--set data.instructions=``): read as a path it
    is the working folder, and the error then named the folder instead of the setting.

    Raises:
        ConfigError: naming the setting and where its value came from.
    """
    for dotted in PATH_KEYS:
        section, key = dotted.split(".")
        value = getattr(local[section], key)
        if isinstance(value, str) and not value.strip():
            unset = "leave it out to build the tiny model" if dotted == "model.path" else "give a file"
            raise ConfigError(f"is empty ({value!r}): it names no file or folder", field=dotted, hint=unset, **origins.of(dotted))


def _check_model_path(model: ModelSettings, origins: Origins) -> None:
    """A ``model.path`` that exists must be a model folder stage1 can load. One that does not exist
    yet passes: the memory plan is read before the weights are downloaded, and the stage that loads
    the model reports it missing.

    Raises:
        ConfigError: a file, an adapter folder, no config.json or model_type, no safetensors weights.
    """
    if model.path is None or not Path(model.path).exists():
        return
    from stage1.hf.models import model_folder_problem

    problem = model_folder_problem(Path(model.path))
    if problem is not None:
        message, hint = problem
        raise ConfigError(f"{model.path}: {message}", field="model.path", hint=hint, **origins.of("model.path"))


#: Seeds reach ``random.Random``, ``torch.manual_seed`` and numpy, and numpy takes only [0, 2**32 - 1].
SEED_RANGE = (0, 2**32 - 1)
SEED_KEYS = ("seed", "tiny_seed")


def _check_seeds(data: dict[str, Any], origins: Origins) -> None:
    """Every seed a section sets lies in ``SEED_RANGE`` (a wrong type is ``settings_from_dict``'s to report).

    Raises:
        ConfigError: naming ``section.seed`` and where its value came from.
    """
    low, high = SEED_RANGE
    for section, values in data.items():
        if not isinstance(values, dict):
            continue
        for key in SEED_KEYS:
            value = values.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
                shown = f"{value}" if abs(value) < 10**20 else f"an integer of {len(str(abs(value)))} digits"
                raise ConfigError(f"must be in [0, 2**32 - 1] (numpy's seed range), got {shown}",
                                  field=f"{section}.{key}", **origins.of(f"{section}.{key}"))


def _with_shared_values(data: dict[str, Any], run_seed: int) -> dict[str, Any]:
    """Fill values that one setting decides for several sections, unless a section sets its own.

    ``run.seed`` becomes the seed of every stage that has one, so ``--set run.seed=7`` changes the
    whole run; ``run.generation_backend`` chooses evaluation's backend too; ``pairs.max_length`` follows ``dpo.max_length``, so no pair is kept that DPO would
    have to cut.
    """
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for section in ("sft_data", "negatives", "pairs", "eval"):
        values = data.setdefault(section, {})
        if isinstance(values, dict):
            values.setdefault("seed", run_seed)
    run_section = data.get("run") if isinstance(data.get("run"), dict) else {}
    if isinstance(data["eval"], dict) and "generation_backend" in run_section:
        data["eval"].setdefault("backend", run_section["generation_backend"])
    dpo, pairs = data.get("dpo"), data.get("pairs")
    if isinstance(dpo, dict) and isinstance(pairs, dict) and isinstance(dpo.get("max_length"), int):
        pairs.setdefault("max_length", dpo["max_length"])
    return data


#: Settings ``_with_shared_values`` may fill from another: an error about the first is about the second's value.
SHARED_FROM = {"pairs.max_length": "dpo.max_length"}


def _blame_shared(error: ConfigError, raw: dict[str, Any], origins: Origins) -> ConfigError:
    """``error`` about a value filled from another setting, placed where that setting's value came from."""
    source = SHARED_FROM.get(error.field or "")
    section, _, key = (error.field or "").partition(".")
    if source is None or key in (raw.get(section) or {}):
        return error
    return ConfigError(f"{error.message} ({error.field} follows {source})", field=source, hint=error.hint, **origins.of(source))


def build_config(
    data: dict[str, Any],
    *,
    source: str | None = None,
    lines: dict[str, int] | None = None,
    overrides: dict[str, str] | None = None,
    check_training: bool = True,
) -> PipelineConfig:
    """Type and check every section of a raw config mapping.

    Args:
        lines: dotted key -> line in ``source``; overrides: dotted key -> the ``--set`` that set it.
            Together they place each error (``Origins``).
        check_training: False keeps ``lora:``, ``sft:`` and ``dpo:`` as written, unchecked: checking
            them imports PEFT and TRL (and so torch), which commands that train nothing never need.

    Raises:
        ConfigError: an unknown section or key, a wrong type, an impossible value.
    """
    origins = Origins(source, dict(lines or {}), dict(overrides or {}))
    for section in data:
        if section not in ALL_SECTIONS:
            error = unknown_key_error(section, ALL_SECTIONS, "", source)
            raise ConfigError("unknown section", field=section, hint=error.hint, **origins.of(section))

    def typed(section: str, cls: type) -> Any:
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError("expected a mapping", field=section, **origins.of(section))
        try:
            return settings_from_dict(cls, values, section=section, source=source)
        except ConfigError as error:
            raise origins.locate(error) from None

    _check_seeds(data, origins)
    local = {name: typed(name, cls) for name, cls in LOCAL_SECTIONS.items()}
    _check_empty_paths(local, origins)
    _check_model_path(local["model"], origins)
    # Before the stage sections: pairs.max_length follows dpo.max_length (_with_shared_values).
    passthrough = {name: _check_passthrough(name, data.get(name) or {}, origins) if check_training else dict(data.get(name) or {})
                   for name in PASSTHROUGH_SECTIONS}
    raw = data
    data = _with_shared_values(data, local["run"].seed)
    try:
        sections = {name: typed(name, _load_class(*where)) for name, where in STAGE_SECTIONS.items()}
    except ConfigError as error:
        raise _blame_shared(error, raw, origins) from None
    if check_training:
        _check_lora_plan(passthrough["lora"], sections["training"], origins)
    _check_dpo_arms(sections["training"], sections["negatives"], origins)
    return PipelineConfig(**local, **sections, **passthrough, source=source)


def load_config(preset: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                check_training: bool = True) -> PipelineConfig:
    """Read a preset (name or file), apply ``KEY=VALUE`` overrides, and type everything.

    Raises:
        ConfigError: see ``read_yaml``, ``parse_override`` and ``build_config``; an error about a
            value a ``--set`` gave names that ``--set`` argument instead of a line of the file.
    """
    path = resolve_preset(preset)
    data, lines = read_yaml(path)
    data = resolve_file_paths(data, path)
    set_by: dict[str, str] = {}
    for text in overrides:
        keys, value = parse_override(text)
        try:
            apply_override(data, keys, value)
        except ConfigError as error:
            raise ConfigError(error.message, path=f"--set {text}", field=".".join(keys), hint=error.hint) from None
        dotted = ".".join(keys)
        if len(keys) == 1 and isinstance(value, dict):  # a section merged into: each key it gives is set
            set_by.update({f"{dotted}.{key}": text for key in value})
            continue
        for name in [name for name in set_by if name.startswith(f"{dotted}.")]:
            del set_by[name]  # a later --set of a whole value replaced them
        set_by[dotted] = text
    return build_config(data, source=str(path), lines=lines, overrides=set_by, check_training=check_training)


def dump_config(config: PipelineConfig) -> str:
    """The resolved config as YAML, written into the run directory."""
    return yaml.safe_dump(config.to_dict(), sort_keys=True, allow_unicode=True)
