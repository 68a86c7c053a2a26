"""The LoRA adapter: built from the ``lora:`` section, checked against what was actually trained.

Plans for this pipeline have drifted to q/v-only adapters without anyone noticing; the check after
wrapping compares the modules that really hold LoRA weights with the plan, layer by layer.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from stage1.config.load import LibrarySection
from stage1.config.typed import RangeRules, check_ranges, is_number, is_whole, unknown_key_error
from stage1.core.errors import ConfigError, TrainingError

log = logging.getLogger(__name__)

#: Every linear projection of a Qwen2 decoder layer.
QWEN2_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: What the stage fills in when the ``lora:`` section leaves a key out (tiny preset values).
LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "bias": "none",
    "target_modules": list(QWEN2_PROJECTIONS),
}
#: Keys the stage sets itself.
LORA_OWNED = {"task_type": "CAUSAL_LM", "inference_mode": False}

#: Ranges PEFT checks only when it wraps the model (r) or never (alpha, dropout).
LORA_RULES: RangeRules = {
    "r": (lambda v: is_whole(v) and v >= 1, "a whole number >= 1"),
    "lora_alpha": (lambda v: is_number(v) and v > 0, "a finite number > 0"),
    "lora_dropout": (lambda v: is_number(v) and 0 <= v < 1, "in [0, 1)"),
}

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LORA_WEIGHT = re.compile(r"\.(?P<module>[A-Za-z0-9_]+)\.lora_[AB]\.")
_LAYER_INDEX = re.compile(r"\.layers\.(?P<index>\d+)\.")


def check_known_keys(cls: type, values: dict[str, Any], section: str) -> None:
    """Refuse keys that ``cls`` (a config dataclass) does not have, naming the nearest valid one.

    Raises:
        ConfigError: ``section.key`` with a "did you mean" hint.
    """
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in values:
        if key not in known:
            raise unknown_key_error(key, known, section)


def target_module_list(value: Any) -> list[str]:
    """``lora.target_modules`` as a list of module names; a str is never iterated as one.

    PEFT reads a str as a regular expression that must match a module's whole dotted path
    (``peft.utils.other.match_target_against_key``: ``re.fullmatch``), so ``"q_proj"`` as a str adapts
    nothing. A single name is therefore taken as the one-item list, and ``"all-linear"`` (PEFT: every
    linear layer but the output layer) as the seven Qwen2 projections, which is what it selects on Qwen2.

    Raises:
        ConfigError: any other str (a pattern, a comma-separated string), an empty list, or items
            that are not names.
    """
    field = "lora.target_modules"
    example = f"[{', '.join(QWEN2_PROJECTIONS)}]"
    if isinstance(value, str):
        if value == "all-linear":
            return list(QWEN2_PROJECTIONS)
        if _MODULE_NAME.match(value):
            return [value]
        raise ConfigError(
            f"{value!r} is not a module name; give a list of names, not a regular expression or a comma-separated string",
            field=field,
            hint=f"e.g. target_modules: {example}, or --set 'lora.target_modules=[q_proj, v_proj]'",
        )
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"expected a non-empty list of module names, got {value!r}", field=field, hint=f"e.g. {example}")
    for index, name in enumerate(value):
        if not isinstance(name, str) or not _MODULE_NAME.match(name):
            raise ConfigError(f"{name!r} is not a module name", field=f"{field}[{index}]", hint=f"e.g. {example}")
    return list(value)


def check_lora_values(values: dict[str, Any]) -> dict[str, Any]:
    """The ``lora:`` section with its ranges checked and ``target_modules`` made a list.

    Raises:
        ConfigError: see ``LORA_RULES`` and ``target_module_list``.
    """
    check_ranges("lora", values, LORA_RULES)
    if "target_modules" not in values:
        return dict(values)
    return {**values, "target_modules": target_module_list(values["target_modules"])}


def build_lora_config(lora_args: dict[str, Any] | None, *, require_all_projections: bool = True):
    """A ``peft.LoraConfig`` from the ``lora:`` section over ``LORA_DEFAULTS``.

    Raises:
        ConfigError: an unknown key, a key the stage owns, a value PEFT refuses, or (with
            ``require_all_projections``) target modules that leave out some of the seven projections.
    """
    from peft import LoraConfig

    user = dict(lora_args or {})
    check_known_keys(LoraConfig, user, "lora")
    for key in LORA_OWNED:
        if key in user:
            raise ConfigError("is set by the training stage", field=f"lora.{key}", hint="remove it from the lora: section")
    values = {**LORA_DEFAULTS, **check_lora_values(user), **LORA_OWNED}
    missing = [name for name in QWEN2_PROJECTIONS if name not in values["target_modules"]]
    if require_all_projections and missing:
        raise ConfigError(
            f"leaves out {', '.join(missing)}; the plan adapts all seven Qwen2 projections",
            field="lora.target_modules",
            hint="add them, or set training.require_all_projections: false to train fewer on purpose",
        )
    try:
        return LoraConfig(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error), field="lora") from None


def adapted_modules(model) -> dict[str, set[int]]:
    """Module name → the layer indices where it holds trainable LoRA weights."""
    found: dict[str, set[int]] = {}
    for name, param in model.named_parameters():
        match = _LORA_WEIGHT.search(name)
        if match is None or not param.requires_grad:
            continue
        layer = _LAYER_INDEX.search(name)
        found.setdefault(match.group("module"), set()).add(int(layer.group("index")) if layer else -1)
    return found


def check_trained_modules(model, lora_config, num_layers: int) -> tuple[str, ...]:
    """Log and assert what the adapter really trains: every target module, in every layer, and nothing else.

    Returns:
        The sorted names of the adapted modules, for lineage and manifests.

    Raises:
        TrainingError: a target module without LoRA weights in some layer, an adapted module
            that was not planned, or a trainable parameter that is not a LoRA weight.
    """
    found = adapted_modules(model)
    planned = set(lora_config.target_modules)
    all_layers = set(range(num_layers))
    problems = []
    for name in sorted(planned):
        layers = found.get(name, set())
        if lora_config.layers_to_transform is None and layers != all_layers:
            problems.append(f"{name} has LoRA weights in {len(layers)} of {num_layers} layers")
    extra = sorted(set(found) - planned)
    if extra:
        problems.append(f"unplanned LoRA weights on {', '.join(extra)}")
    stray = [n for n, p in model.named_parameters() if p.requires_grad and ".lora_" not in n]
    if stray:
        problems.append(f"non-LoRA parameters are trainable: {', '.join(stray[:5])}")
    if problems:
        raise TrainingError("the adapter differs from the plan: " + "; ".join(problems))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("LoRA trains %s in %d layers (%d parameters)", ", ".join(sorted(found)), num_layers, trainable)
    return tuple(sorted(found))


#: The ``lora:`` section of a configuration: PEFT's ``LoraConfig`` as written, less the keys the
#: training stage sets (``LORA_OWNED``).
SECTION = LibrarySection("lora", ("peft", "LoraConfig"), owned={key: "the training stage sets it" for key in LORA_OWNED},
                         check_values=check_lora_values)
