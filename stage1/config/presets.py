"""The shipped presets and pools (package data), and how paths in a config file are resolved."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # stage1/
#: The shipped presets (package data): ``--config NAME`` is ``PRESETS_DIR / NAME.yaml``.
PRESETS_DIR = PACKAGE_DIR / "presets"
#: The shipped instruction, exemplar and evaluation pools (package data).
POOLS_DIR = PACKAGE_DIR / "pools"
DEFAULT_PRESET = "tiny"
#: Settings that hold a path. One written in a config file is resolved against that file's folder
#: (so a preset's pools resolve wherever the package is installed); one given with ``--set`` is
#: left as typed, relative to the user's current folder.
PATH_KEYS = ("model.path", "model.architecture", "data.instructions", "data.exemplars", "data.eval_items")


def resolve_preset(name_or_path: str | Path | None) -> Path:
    """A preset name (``tiny``, ``qwen2.5-32b``) or a path to a YAML file."""
    if name_or_path is None:
        name_or_path = DEFAULT_PRESET
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return PRESETS_DIR / f"{name_or_path}.yaml"


def shipped_pools() -> dict[str, Path]:
    """The shipped pools by name (``items_large`` is ``pools/eval/items_large.jsonl``)."""
    return {path.stem: path for path in sorted(POOLS_DIR.glob("*/*.jsonl"))}


def input_path(text: str) -> Path:
    """An ``--in NAME=PATH`` value: a file or folder as typed, or, when nothing exists there and the
    text is a shipped pool's name (``items``, ``items_large``, ``instructions``, ...), that pool,
    wherever the package is installed."""
    typed = Path(text)
    if typed.exists() or typed.is_symlink():
        return typed
    return shipped_pools().get(text, typed)


def resolve_file_paths(data: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """``data`` with each relative ``PATH_KEYS`` value made relative to ``config_file``'s folder.

    A preset names its pools relative to itself (``../pools/sft/instructions.jsonl``), so they resolve
    from any working folder and wherever the package is installed.
    """
    folder = Path(os.path.abspath(config_file)).parent
    resolved = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for dotted in PATH_KEYS:
        section, key = dotted.split(".")
        values = resolved.get(section)
        if isinstance(values, dict) and isinstance(values.get(key), str) and values[key]:
            path = Path(values[key]).expanduser()
            if not path.is_absolute():
                values[key] = os.path.normpath(folder / path)
    return resolved
