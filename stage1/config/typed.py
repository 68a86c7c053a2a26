"""Typed settings from plain dicts: unknown keys and wrong types refused, naming the nearest valid key.

Each stage owns a frozen dataclass of its settings (defaults = the tiny preset); the YAML loader hands
each section's dict to ``settings_from_dict``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from stage1.core.errors import ConfigError

T = TypeVar("T")


def nearest(key: str, valid: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_key_error(key: str, valid: typing.Iterable[str], section: str, source: str | None = None) -> ConfigError:
    valid = sorted(valid)
    guess = nearest(key, valid)
    hint = f"did you mean '{guess}'?" if guess else f"valid keys: {', '.join(valid)}"
    return ConfigError("unknown key", path=source, field=f"{section}.{key}" if section else key, hint=hint)


def _coerce(value: Any, annotation: Any, field: str, source: str | None) -> Any:
    """``value`` checked against ``annotation`` (and converted where YAML gives another type: a list to a
    tuple, ``1`` or ``"1e-3"`` to a float, a mapping to a nested settings dataclass).

    Raises:
        ConfigError: naming ``field`` and what was expected.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, args, field, source)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"must be one of {', '.join(map(repr, args))}, got {value!r}", path=source, field=field)
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {type(value).__name__}", path=source, field=field)
        return settings_from_dict(annotation, value, section=field, source=source)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {type(value).__name__}", path=source, field=field)
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, f"{field}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {type(value).__name__}", path=source, field=field)
        key_type, value_type = args or (Any, Any)
        return {_coerce(k, key_type, field, source): _coerce(v, value_type, f"{field}.{k}", source) for k, v in value.items()}
    if annotation is float:
        value = _as_float(value, field, source)
    if annotation in (int, float, str, bool):
        if isinstance(value, bool) and annotation is not bool:
            raise ConfigError(f"expected {annotation.__name__}, got a boolean", path=source, field=field)
        if not isinstance(value, annotation):
            raise ConfigError(f"expected {annotation.__name__}, got {type(value).__name__} {value!r}", path=source, field=field)
    return value


def _coerce_union(value: Any, options: tuple[Any, ...], field: str, source: str | None) -> Any:
    """``value`` as the first of ``options`` that takes it (None when the union allows it); the first
    option's error when none does."""
    if value is None and type(None) in options:
        return None
    errors = []
    for option in (a for a in options if a is not type(None)):
        try:
            return _coerce(value, option, field, source)
        except ConfigError as error:
            errors.append(error)
    raise errors[0] if errors else ConfigError("invalid value", path=source, field=field)


def _as_float(value: Any, field: str, source: str | None) -> Any:
    """A float setting's value: a numeric string or an int as a float, a non-finite float refused;
    anything else is returned for the type check to refuse.

    Raises:
        ConfigError: an int too large for a float, or an infinite or NaN float.
    """
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads "1e-3" as a string
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int past 1.8e308
            raise ConfigError(f"must be a finite number, got an integer of {len(str(abs(value)))} digits", path=source, field=field) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"must be a finite number, got {value!r}", path=source, field=field)
    return value


def settings_from_dict(cls: type[T], data: dict[str, Any] | None, *, section: str = "", source: str | None = None) -> T:
    """Build the frozen dataclass ``cls`` from ``data``, refusing unknown keys and wrong types.

    Raises:
        ConfigError: naming the dotted key (``section.key``) and the nearest valid key.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    valid = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in valid:
            raise unknown_key_error(key, valid, section, source)
    values = {}
    for name, value in data.items():
        dotted = f"{section}.{name}" if section else name
        values[name] = _coerce(value, hints[name], dotted, source)
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(str(error), path=source, field=section or None) from None


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (YAML's ``true`` is an int to Python; ``.inf`` and
    ``.nan`` are floats, but no setting means them: "> 0" must not let infinity through)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)



def is_whole(value: Any) -> bool:
    """An int, not a bool: a step or batch count (``2.5`` is refused, not truncated)."""
    return isinstance(value, int) and not isinstance(value, bool)


#: key -> (whether a value is accepted, what is accepted, for the message). Predicates take any value.
RangeRules = dict[str, tuple[Callable[[Any], bool], str]]


def check_ranges(section: str, values: dict[str, Any], rules: RangeRules) -> None:
    """Check each value of ``values`` that has a rule in ``rules``.

    Raises:
        ConfigError: ``section.key``: "must be <what is accepted>, got <value>", for the first value refused.
    """
    for key, (accepts, accepted) in rules.items():
        if key in values and not accepts(values[key]):
            raise ConfigError(f"must be {accepted}, got {values[key]!r}", field=f"{section}.{key}")


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """Plain-dict form (tuples as lists) for manifests and the resolved config."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(settings)
