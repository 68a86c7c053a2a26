"""The environment variables stage1 reads as numbers, parsed as ASCII decimal only.

``str.isdigit`` and ``int`` both accept more than ASCII digits: ``"²".isdigit()`` is True yet
``int("²")`` raises, and ``int("٣")`` / ``int("２")`` return 3 and 2. A launcher, torch or a CUDA
driver reads these variables as well, and each parses them its own way; a value that is not plain
ASCII decimal is refused here, by name, before any of them sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from stage1.core.errors import ConfigError

_ASCII_DECIMAL = re.compile(r"[0-9]+")
#: ``CUDA_VISIBLE_DEVICES`` entries: a device index (``-1`` hides every device) or a GPU/MIG UUID.
_DEVICE = re.compile(r"-1|[0-9]+|(GPU|MIG)-[0-9A-Za-z/-]+")

#: variable -> (smallest value allowed, what it must be), for the variables read as numbers.
NUMERIC_VARIABLES: dict[str, tuple[int, str]] = {
    "WORLD_SIZE": (1, "a whole number of processes"),
    "RANK": (0, "a whole-number rank"),
    "LOCAL_RANK": (0, "a whole-number rank"),
    "LOCAL_WORLD_SIZE": (1, "a whole number of processes"),
    "STAGE1_EVAL_PARENT_PID": (1, "a whole-number process id"),
}


def parse_ascii_int(text: str) -> int | None:
    """``text`` (spaces around it allowed) as a non-negative ASCII decimal integer, or None."""
    stripped = text.strip()
    return int(stripped) if _ASCII_DECIMAL.fullmatch(stripped) else None


def env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """The variable ``name`` as an ASCII decimal integer (``default`` when unset or empty).

    Raises:
        ConfigError: naming the variable and its value when it is not ASCII decimal or is too small.
    """
    text = environ.get(name, "")
    if not text.strip():
        return default
    minimum, noun = NUMERIC_VARIABLES.get(name, (0, "a whole number"))
    value = parse_ascii_int(text)
    if value is None or value < minimum:
        raise ConfigError(
            f"must be {noun} >= {minimum}, got {text!r}", path="environment", field=name,
            hint=f"ASCII digits 0-9 only; unset {name}, or let accelerate launch / torchrun set it",
        )
    return value


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse, by name, any numeric variable (``NUMERIC_VARIABLES``, ``CUDA_VISIBLE_DEVICES``) that
    is not ASCII decimal.

    Raises:
        ConfigError: naming the first bad variable and its value.
    """
    for name in NUMERIC_VARIABLES:
        env_int(environ, name, 0)
    devices = environ.get("CUDA_VISIBLE_DEVICES")
    if devices is not None and devices.strip():
        for entry in devices.split(","):
            if not _DEVICE.fullmatch(entry.strip()) or not entry.strip().isascii():
                raise ConfigError(
                    f"{entry.strip()!r} is not a device index (ASCII digits) or a GPU-/MIG- UUID, in {devices!r}",
                    path="environment", field="CUDA_VISIBLE_DEVICES", hint="e.g. CUDA_VISIBLE_DEVICES=0,1, or unset it",
                )
