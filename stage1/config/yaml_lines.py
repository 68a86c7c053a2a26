"""YAML read safely, with the line of every dotted key for error messages.

``yaml.safe_load`` semantics (no tags, no code), UTF-8, and a key given twice is refused (PyYAML
would silently keep the last). Keys must be strings (``1:``, ``true:`` or ``null:`` would become
an int, a bool or None and match no setting). Anchors and aliases are allowed but bounded: an alias
is never expanded here (each node is visited once), a recursive alias is refused, and so is a tree
whose aliases expand to more than ``MAX_EXPANDED_NODES`` values (nine levels of ``&a [*b, *b, ...]``
is 9^9 values that every later step would walk).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stage1.config.presets import PRESETS_DIR
from stage1.core.errors import ConfigError, InputError

#: Most values a config may hold once its aliases are expanded; the largest preset holds about 200.
MAX_EXPANDED_NODES = 10_000
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_aliases(root: yaml.Node, path: Path) -> None:
    """Refuse a recursive alias, or aliases that expand the tree past ``MAX_EXPANDED_NODES``.

    Counts the expanded size with one visit per distinct node (a shared node's size is memoised),
    iteratively, so neither a bomb nor a cycle is ever expanded.

    Raises:
        ConfigError: naming the line of the recursive or the expanding node.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"aliases expand this value to {sizes[key]:,} values or more; the limit is {MAX_EXPANDED_NODES:,}",
                    path=path, line=node.start_mark.line + 1, hint="write the values out, or use fewer nested aliases",
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError("a recursive alias (a value that contains itself)", path=path,
                              line=node.start_mark.line + 1, hint="an alias may only name a value defined before it, outside it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _line_index(
    node: yaml.Node, path: Path, prefix: str = "", index: dict[str, int] | None = None, visited: set[int] | None = None
) -> dict[str, int]:
    """Map each dotted key in a composed YAML tree to its 1-based line.

    A node reached again through an alias is not walked again: its keys keep the lines of the
    anchored original (``check_aliases`` has already refused cycles and bombs).

    Raises:
        ConfigError: a key given twice in one mapping (PyYAML would silently keep the last), a key
            that is not a string.
    """
    index = {} if index is None else index
    visited = set() if visited is None else visited
    if id(node) in visited:
        return index
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in (_STR_TAG, _MERGE_TAG):
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"a {key_node.id}"
                where = f" under '{prefix}'" if prefix else ""
                raise ConfigError(
                    f"the key {shown!r}{where} is not a string (YAML reads it as {key_node.tag.rsplit(':', 1)[-1]})",
                    path=path, line=line, field=prefix or None, hint="quote the key, or fix the indentation",
                )
            dotted = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise ConfigError(
                        f"given twice (first on line {seen[key_node.value]}); YAML would silently keep the last",
                        path=path, line=line, field=dotted, hint="remove one of them",
                    )
                seen[key_node.value] = line
            index[dotted] = line
            _line_index(value_node, path, dotted, index, visited)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _line_index(item, path, f"{prefix}[{position}]", index, visited)
    return index


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a UTF-8 byte-order mark is allowed).

    Raises:
        ConfigError: unreadable, or not UTF-8 (a UTF-16 file without a byte-order mark may decode
            as UTF-8, NULs and all, so NUL bytes are refused here too).
    """
    from stage1.io.readers import read_input_bytes

    try:
        raw = read_input_bytes(path)
    except InputError as error:
        raise ConfigError(error.message, path=path, hint=error.hint) from None
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
    if not path.exists() and not path.is_symlink():
        raise ConfigError("config file not found", path=path, hint=f"presets live in {PRESETS_DIR}")
    text = _read_text(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            check_aliases(node, path)  # before safe_load builds, and anything later walks, the values
        lines = _line_index(node, path) if node is not None else {}
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(error, 'problem', error)}", path=path, line=mark.line + 1 if mark else None) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections", path=path, line=1)
    return data, lines
