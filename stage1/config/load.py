"""Loading a configuration: YAML presets, dotted overrides, typed sections. Knows no stage.

What the sections are comes from a ``Schema`` handed in (``stage1.stages.config`` assembles the
pipeline's from the stages' declarations):
- ``run``, ``model``, ``data``: run-wide, typed by the frozen dataclasses below;
- a ``TypedSection``: a frozen dataclass of settings a stage declares in its ``settings.py``;
- a ``LibrarySection`` (``lora``, ``sft``, ``dpo``): passed straight through to a library's config
  class (PEFT's ``LoraConfig``, TRL's ``SFTConfig``/``DPOConfig``). Its keys are checked against that
  class's fields, so every knob the library has is available without being declared twice, and a
  typo is refused with the nearest name.

YAML is read with ``yaml.safe_load`` semantics (no tags, no code), as UTF-8, and a key given twice is
refused; override values are parsed the same way. Values are range-checked here, so a config that
cannot train stops before any stage runs. Errors name the dotted key and where its value came from:
the file and line, or the ``--set`` argument.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stage1.config.overrides import Origins, apply_override, as_number, parse_override
from stage1.config.presets import PATH_KEYS, POOLS_DIR, resolve_file_paths, resolve_preset
from stage1.config.typed import settings_from_dict, unknown_key_error
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


BASE_SECTIONS: dict[str, type] = {"run": RunSettings, "model": ModelSettings, "data": DataSettings}


@dataclass(frozen=True)
class TypedSection:
    """A section typed by a frozen dataclass of settings (a stage's, declared in its ``settings.py``).

    Attributes:
        follows: key -> the dotted setting whose value the key takes when the section leaves it out and
            that setting is given with a value of the key's type (``seed`` follows ``run.seed``).
    """

    name: str
    settings: type
    follows: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LibrarySection:
    """A section handed as written to a library's config class (``lora`` to PEFT, ``sft``/``dpo`` to TRL).

    Attributes:
        library: (module, class) of that config class, imported when the section is checked (PEFT and
            TRL import torch, which commands that train nothing never need).
        owned: keys the stage sets itself -> what to do instead: a user value would be overwritten,
            so it is refused.
        renamed: keys the library no longer has -> what replaced them (the hint of the refusal).
        check_values: ranges and conversions of the values; returns the section as training reads it.
    """

    name: str
    library: tuple[str, str]
    owned: Mapping[str, str]
    check_values: Callable[[dict[str, Any]], dict[str, Any]]
    renamed: Mapping[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, dataclasses.Field]:
        module, name = self.library
        return {f.name: f for f in dataclasses.fields(getattr(importlib.import_module(module), name)) if f.init}


#: A check across sections, given every typed section by name; raises a ConfigError naming its field.
CrossCheck = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Schema:
    """Every section of a configuration beyond ``run``, ``model`` and ``data``, and the checks across them.

    Attributes:
        base_checks: checks of ``run``, ``model`` and ``data`` alone, before the other sections are read.
        checks: checks across the typed sections.
        library_checks: checks that need the library sections checked (skipped with them).
    """

    sections: tuple[TypedSection, ...]
    library: tuple[LibrarySection, ...]
    base_checks: tuple[CrossCheck, ...] = ()
    checks: tuple[CrossCheck, ...] = ()
    library_checks: tuple[CrossCheck, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (*BASE_SECTIONS, *(s.name for s in self.sections), *(s.name for s in self.library))

    def shared_from(self) -> dict[str, str]:
        """``section.key`` -> the setting it follows: an error about the first is about the second's value."""
        return {f"{section.name}.{key}": source for section in self.sections for key, source in section.follows.items()}


# ---------------------------------------------------------------- sections


def _check_library_section(section: LibrarySection, values: Any, origins: Origins) -> dict[str, Any]:
    """A library section with known keys, none the stage owns, numbers where the library wants numbers,
    and the section's own value checks.

    Raises:
        ConfigError: an unknown or stage-owned key, a wrong type, a value out of range.
    """
    if not isinstance(values, dict):
        raise ConfigError("expected a mapping", field=section.name, **origins.of(section.name))
    known = section.fields()
    checked: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{section.name}.{key}"
        where = origins.of(dotted)
        if key in section.owned:
            raise ConfigError("is set by the pipeline", field=dotted, hint=section.owned[key], **where)
        if key not in known:
            hint = section.renamed.get(key) or unknown_key_error(key, known, section.name).hint
            raise ConfigError("unknown key", field=dotted, hint=hint, **where)
        checked[key] = value = as_number(value)
        _check_library_value(dotted, value, known[key], where)
    try:
        return section.check_values(checked)
    except ConfigError as error:
        raise origins.locate(error) from None


def _check_library_value(dotted: str, value: Any, known: dataclasses.Field, where: dict[str, Any]) -> None:
    """A finite number, a boolean where the library's default is one, a number where it is a number.

    Raises:
        ConfigError: naming the key and where its value came from.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"must be a finite number, got {value!r}", field=dotted, **where)
    if value is None and "None" in str(known.type):
        return
    default = known.default
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"expected a boolean, got {value!r}", field=dotted, **where)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", field=dotted, **where)


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


def _with_shared_values(data: dict[str, Any], sections: tuple[TypedSection, ...]) -> dict[str, Any]:
    """Fill the values one setting decides for several sections (``TypedSection.follows``), unless a
    section sets its own: ``run.seed`` becomes the seed of every stage that has one, so ``--set
    run.seed=7`` changes the whole run; ``run.generation_backend`` chooses evaluation's backend too;
    ``pairs.max_length`` follows ``dpo.max_length``, so no pair is kept that DPO would have to cut.
    """
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for section in sections:
        if not section.follows:
            continue
        values = data.setdefault(section.name, {})
        if not isinstance(values, dict):
            continue
        defaults = {f.name: f.default for f in dataclasses.fields(section.settings)}
        for key, dotted in section.follows.items():
            source, _, source_key = dotted.partition(".")
            given = data.get(source) if isinstance(data.get(source), dict) else {}
            if source_key in given and isinstance(given[source_key], type(defaults[key])):
                values.setdefault(key, given[source_key])
    return data


def _blame_shared(error: ConfigError, raw: dict[str, Any], origins: Origins, shared_from: dict[str, str]) -> ConfigError:
    """``error`` about a value filled from another setting, placed where that setting's value came from."""
    source = shared_from.get(error.field or "")
    section, _, key = (error.field or "").partition(".")
    if source is None or key in (raw.get(section) or {}):
        return error
    return ConfigError(f"{error.message} ({error.field} follows {source})", field=source, hint=error.hint, **origins.of(source))


def _typed(data: dict[str, Any], section: str, cls: type, origins: Origins) -> Any:
    """One section typed by its dataclass, an error placed where its value came from."""
    values = data.get(section) or {}
    if not isinstance(values, dict):
        raise ConfigError("expected a mapping", field=section, **origins.of(section))
    try:
        return settings_from_dict(cls, values, section=section, source=origins.source)
    except ConfigError as error:
        raise origins.locate(error) from None


def build_sections(
    data: dict[str, Any],
    schema: Schema,
    *,
    source: str | None = None,
    lines: dict[str, int] | None = None,
    overrides: dict[str, str] | None = None,
    check_training: bool = True,
) -> dict[str, Any]:
    """Type and check every section of a raw config mapping: section name -> its typed settings (a
    library section as a dict), in the order of ``schema.names``.

    Args:
        lines: dotted key -> line in ``source``; overrides: dotted key -> the ``--set`` that set it.
            Together they place each error (``Origins``).
        check_training: False keeps the library sections as written, unchecked: checking them
            imports PEFT and TRL (and so torch), which commands that train nothing never need.

    Raises:
        ConfigError: an unknown section or key, a wrong type, an impossible value.
    """
    origins = Origins(source, dict(lines or {}), dict(overrides or {}))
    for section in data:
        if section not in schema.names:
            error = unknown_key_error(section, schema.names, "", source)
            raise ConfigError("unknown section", field=section, hint=error.hint, **origins.of(section))
    _check_seeds(data, origins)
    base = {name: _typed(data, name, cls, origins) for name, cls in BASE_SECTIONS.items()}
    _check_empty_paths(base, origins)
    _run_checks(schema.base_checks, base, origins)
    # Before the typed sections: pairs.max_length follows dpo.max_length (_with_shared_values).
    library = {section.name: _check_library_section(section, data.get(section.name) or {}, origins) if check_training
               else dict(data.get(section.name) or {}) for section in schema.library}
    shared = _with_shared_values(data, schema.sections)
    try:
        typed = {section.name: _typed(shared, section.name, section.settings, origins) for section in schema.sections}
    except ConfigError as error:
        raise _blame_shared(error, data, origins, schema.shared_from()) from None
    sections = {**base, **typed, **library}
    _run_checks((*schema.checks, *(schema.library_checks if check_training else ())), sections, origins)
    return sections


def _run_checks(checks: tuple[CrossCheck, ...], sections: dict[str, Any], origins: Origins) -> None:
    """Each check on the sections read so far, its error placed where its field's value came from."""
    for check in checks:
        try:
            check(sections)
        except ConfigError as error:
            raise origins.locate(error) from None


def load_sections(schema: Schema, preset: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                  check_training: bool = True) -> tuple[dict[str, Any], str]:
    """Read a preset (name or file), apply ``KEY=VALUE`` overrides, and type everything: the sections
    (``build_sections``) and the file they were read from.

    Raises:
        ConfigError: see ``read_yaml``, ``parse_override`` and ``build_sections``; an error about a
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
    sections = build_sections(data, schema, source=str(path), lines=lines, overrides=set_by, check_training=check_training)
    return sections, str(path)
