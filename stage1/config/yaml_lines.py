"""YAML read safely, with the line of every dotted key for error messages.

``yaml.safe_load`` semantics (no tags, no code), UTF-8, and a key given twice is refused (PyYAML
would silently keep the last).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stage1.config.presets import PRESETS_DIR
from stage1.core.errors import ConfigError


def _line_index(node: yaml.Node, path: Path, prefix: str = "", index: dict[str, int] | None = None) -> dict[str, int]:
    """Map each dotted key in a composed YAML tree to its 1-based line.

    Raises:
        ConfigError: a key given twice in one mapping (PyYAML would silently keep the last).
    """
    index = {} if index is None else index
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            dotted = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise ConfigError(
                        f"given twice (first on line {seen[key_node.value]}); YAML would silently keep the last",
                        path=path, line=line, field=dotted, hint="remove one of them",
                    )
                seen[key_node.value] = line
            index[dotted] = line
            _line_index(value_node, path, dotted, index)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _line_index(item, path, f"{prefix}[{position}]", index)
    return index


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a UTF-8 byte-order mark is allowed).

    Raises:
        ConfigError: unreadable, or not UTF-8 (a UTF-16 file without a byte-order mark may decode
            as UTF-8, NULs and all, so NUL bytes are refused here too).
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the config file: {error.strerror}", path=path) from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        problem = "UTF-16, by its byte-order mark"
    elif b"\x00" in raw:
        problem = "it holds NUL bytes, as UTF-16 text does"
    else:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            problem = f"byte 0x{raw[error.start]:02x} at offset {error.start} is not UTF-8"
    raise ConfigError(f"not UTF-8 text ({problem})", path=path, hint="save the file as UTF-8")


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML mapping safely; return it with a dotted-key → line index.

    Raises:
        ConfigError: missing or non-UTF-8 file, invalid YAML (with its line), a key given twice, a
            top level that is not a mapping.
    """
    if not path.is_file():
        raise ConfigError("config file not found", path=path, hint=f"presets live in {PRESETS_DIR}")
    text = _read_text(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(error, 'problem', error)}", path=path, line=mark.line + 1 if mark else None) from None
    lines = _line_index(node, path) if node is not None else {}
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections", path=path, line=1)
    return data, lines
