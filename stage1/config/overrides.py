"""``--set KEY=VALUE`` overrides, and where each config value came from (a file line or a ``--set``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from stage1.core.errors import ConfigError

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


@dataclass(frozen=True)
class Origins:
    """Where each value came from, for error messages: a line of the config file, or a ``--set``."""

    source: str | None = None
    lines: dict[str, int] = field(default_factory=dict)  # dotted key -> its line in ``source``
    overrides: dict[str, str] = field(default_factory=dict)  # dotted key -> the ``--set`` argument that set it

    def of(self, dotted: str | None) -> dict[str, Any]:
        """``path``/``line`` for a ConfigError about ``dotted`` (``negatives.mix[2]`` counts as ``negatives.mix``).

        A ``--set`` of the key, or of a section above it, wins over the file: its value replaced the file's.
        """
        if not dotted:
            return {"path": self.source, "line": None}
        key = dotted.split("[")[0]
        parts = key.split(".")
        for end in range(len(parts), 0, -1):
            text = self.overrides.get(".".join(parts[:end]))
            if text is not None:
                return {"path": f"--set {text}", "line": None}
        if key in self.lines:
            return {"path": self.source, "line": self.lines[key]}
        below = [text for name, text in self.overrides.items() if name.startswith(f"{key}.")]
        if below:  # a section only --set made (``--set negativs.x=1``)
            return {"path": f"--set {below[0]}", "line": None}
        return {"path": self.source, "line": None}

    def locate(self, error: ConfigError) -> ConfigError:
        """``error`` placed where its field's value came from, unless it already names a line or another file."""
        if error.line is not None or error.path not in (None, self.source):
            return error
        return ConfigError(error.message, field=error.field, hint=error.hint, **self.of(error.field))
