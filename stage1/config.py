"""The pipeline's configuration: YAML presets, dotted overrides, typed sections.

Sections and who owns their fields:
- ``run``, ``model``, ``data``: this module (frozen dataclasses below);
- ``sft_data``, ``negatives``, ``pairs``, ``training``, ``eval``: the stage modules' own settings;
- ``lora``, ``sft``, ``dpo``: passed straight through to PEFT's ``LoraConfig`` and TRL's
  ``SFTConfig``/``DPOConfig``. Their keys are checked against those dataclasses' fields, so every knob
  TRL has is available without being declared twice here, and a typo is refused with the nearest name.

YAML is read with ``yaml.safe_load`` semantics (no tags, no code); override values are parsed the same
way. Errors name the file, the line and the dotted key.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from stage1.errors import ConfigError
from stage1.settings import settings_from_dict, settings_to_dict, unknown_key_error

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_PRESET = "tiny"


@dataclass(frozen=True)
class RunSettings:
    """Run-wide settings."""

    seed: int = 0  # one seed for every stage (each stage derives its own generator from it)
    on_bad_rows: Literal["stop", "skip"] = "stop"  # a bad input row stops the stage, or is skipped and counted
    generation_backend: Literal["transformers", "vllm"] = "transformers"  # SFT data and evaluation generation
    log_file: str = "run.log"  # inside the run directory


@dataclass(frozen=True)
class ModelSettings:
    """The base model."""

    path: str | None = None  # a local model folder; None builds the tiny offline Qwen2 into <run>/model
    tiny_seed: int = 0  # seed of the tiny model's weights
    architecture: str | None = None  # a config.json-style file for the memory plan when no weights are present
    trust_remote_code: bool = False  # only a user's explicit choice turns this on


@dataclass(frozen=True)
class DataSettings:
    """Input files (paths relative to the working directory)."""

    instructions: str = "fixtures/sft/instructions.jsonl"  # instruction pool (with responses when sft_data.source=file)
    exemplars: str = "fixtures/sft/exemplars.jsonl"  # few-shot exemplars for sft_data.source=model
    eval_items: str = "fixtures/eval/items.jsonl"  # held-out evaluation items (reference answers, constraints)


# section name -> (module, class) of the stage that owns it; imported lazily so `--help` stays instant.
STAGE_SECTIONS: dict[str, tuple[str, str]] = {
    "sft_data": ("stage1.sft_data", "SFTDataSettings"),
    "negatives": ("stage1.negatives", "NegativeSettings"),
    "pairs": ("stage1.pairs", "PairSettings"),
    "training": ("stage1.train_settings", "TrainingSettings"),
    "eval": ("stage1.evaluate", "EvalSettings"),
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
    """Everything one run needs, resolved and typed."""

    run: RunSettings
    model: ModelSettings
    data: DataSettings
    sections: dict[str, Any] = field(default_factory=dict)  # stage settings objects by section name
    lora: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    dpo: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def section(self, name: str) -> Any:
        return self.sections[name]

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = {name: settings_to_dict(getattr(self, name)) for name in LOCAL_SECTIONS}
        plain.update({name: settings_to_dict(value) for name, value in self.sections.items()})
        plain.update({name: dict(getattr(self, name)) for name in PASSTHROUGH_SECTIONS})
        return plain


# ---------------------------------------------------------------- YAML with line numbers


def _line_index(node: yaml.Node, prefix: str = "", index: dict[str, int] | None = None) -> dict[str, int]:
    """Map each dotted key in a composed YAML tree to its 1-based line."""
    index = {} if index is None else index
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            dotted = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            index[dotted] = key_node.start_mark.line + 1
            _line_index(value_node, dotted, index)
    return index


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML mapping safely; return it with a dotted-key → line index.

    Raises:
        ConfigError: missing file, invalid YAML (with its line), a top level that is not a mapping.
    """
    if not path.is_file():
        raise ConfigError("config file not found", path=path, hint=f"presets live in {CONFIGS_DIR}")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(error, 'problem', error)}", path=path, line=mark.line + 1 if mark else None) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections", path=path, line=1)
    return data, _line_index(node) if node is not None else {}


def resolve_preset(name_or_path: str | Path | None) -> Path:
    """A preset name (``tiny``, ``qwen2.5-32b``) or a path to a YAML file."""
    if name_or_path is None:
        name_or_path = DEFAULT_PRESET
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return CONFIGS_DIR / f"{name_or_path}.yaml"


# ---------------------------------------------------------------- overrides


# YAML 1.1 (PyYAML) reads "1e-3" as a string; users write learning rates that way, so numbers in
# exponent form without a dot are read as floats here.
_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def as_number(value: Any) -> Any:
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        return float(value)
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"dpo.beta=0.2"`` → (["dpo", "beta"], 0.2). Values are read as YAML scalars/lists, never evaluated.

    Raises:
        ConfigError: no ``=``, or an empty key.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE", field="--set", hint="e.g. --set dpo.beta=0.2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), as_number(value)


def apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    target = data
    for key in keys[:-1]:
        node = target.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: {key} is not a section", field="--set")
        target = node
    target[keys[-1]] = value


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
        from stage1.lora import LORA_OWNED

        return {key: "the training stage sets it" for key in LORA_OWNED}
    from stage1.trainer_config import OWNED_KEYS

    return dict(OWNED_KEYS)


def _check_passthrough(section: str, values: dict[str, Any], source: str | None, lines: dict[str, int]) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError("expected a mapping", path=source, line=lines.get(section), field=section)
    known = passthrough_fields(section)
    for key, value in values.items():
        dotted = f"{section}.{key}"
        owned = _stage_owned_keys(section)
        if key in PIPELINE_OWNED_KEYS or key in owned:
            hint = owned.get(key) or "remove it"
            raise ConfigError("is set by the pipeline", path=source, line=lines.get(dotted), field=dotted, hint=hint)
        if key not in known:
            error = unknown_key_error(key, known, section, source)
            error.line = lines.get(dotted)
            raise ConfigError(error.message, path=source, line=error.line, field=dotted, hint=error.hint)
        default = known[key].default
        value = values[key] = as_number(value)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"expected a boolean, got {value!r}", path=source, line=lines.get(dotted), field=dotted)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"expected a number, got {value!r}", path=source, line=lines.get(dotted), field=dotted)
    return dict(values)


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


def build_config(data: dict[str, Any], *, source: str | None = None, lines: dict[str, int] | None = None) -> PipelineConfig:
    """Type every section of a raw config mapping.

    Raises:
        ConfigError: an unknown section or key, a wrong type, an impossible value.
    """
    lines = lines or {}
    for section in data:
        if section not in ALL_SECTIONS:
            error = unknown_key_error(section, ALL_SECTIONS, "", source)
            raise ConfigError("unknown section", path=source, line=lines.get(section), field=section, hint=error.hint)

    def typed(section: str, cls: type) -> Any:
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError("expected a mapping", path=source, line=lines.get(section), field=section)
        try:
            return settings_from_dict(cls, values, section=section, source=source)
        except ConfigError as error:
            if error.line is None and error.field:
                error = ConfigError(error.message, path=source, line=lines.get(error.field.split("[")[0]), field=error.field, hint=error.hint)
            raise error from None

    local = {name: typed(name, cls) for name, cls in LOCAL_SECTIONS.items()}
    data = _with_shared_values(data, local["run"].seed)
    sections = {name: typed(name, _load_class(*where)) for name, where in STAGE_SECTIONS.items()}
    passthrough = {name: _check_passthrough(name, data.get(name) or {}, source, lines) for name in PASSTHROUGH_SECTIONS}
    return PipelineConfig(**local, sections=sections, **passthrough, source=source)


def load_config(preset: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read a preset (name or file), apply ``KEY=VALUE`` overrides, and type everything.

    Raises:
        ConfigError: see ``read_yaml``, ``parse_override`` and ``build_config``.
    """
    path = resolve_preset(preset)
    data, lines = read_yaml(path)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    return build_config(data, source=str(path), lines=lines)


def dump_config(config: PipelineConfig) -> str:
    """The resolved config as YAML, written into the run directory."""
    return yaml.safe_dump(config.to_dict(), sort_keys=True, allow_unicode=True)
