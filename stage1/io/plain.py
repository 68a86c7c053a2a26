"""Plain reads of files that stage1 itself, or a library it drives, wrote.

``readers`` reads a user's input strictly (a regular file only, no byte-order mark, no repeated
key, limits on nesting) and turns every failure into an ``InputError`` naming the file. The files
read here are not a user's input: a ``config.json`` or ``trainer_state.json`` that transformers
wrote, a job file or cache record stage1 wrote a moment ago. Their callers want the plain
behaviour of ``json.loads`` and ``open``: a missing or unreadable file raises ``OSError``, bad
UTF-8 or JSON raises ``ValueError`` (``UnicodeDecodeError``, ``json.JSONDecodeError``), so a
caller that treats a broken file as absent catches ``(OSError, ValueError)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_json(path: str | Path) -> Any:
    """The JSON document in ``path``, read as UTF-8 and parsed by ``json.loads``.

    Raises:
        OSError: the file is missing or cannot be read.
        ValueError: the bytes are not UTF-8, or the text is not JSON.
    """
    return json.loads(Path(path).read_text(encoding="utf-8"))


def text_lines(path: str | Path) -> Iterator[str]:
    """The lines of the UTF-8 text file ``path``, newlines kept, read one at a time (never held whole).

    Raises:
        OSError: the file is missing or cannot be read.
        UnicodeDecodeError: the bytes are not UTF-8.
    """
    with open(path, encoding="utf-8") as handle:
        yield from handle


def read_byte_range(path: str | Path, offset: int, size: int) -> bytes:
    """At most ``size`` bytes of ``path`` from byte ``offset`` on (fewer where the file ends first).

    Raises:
        OSError: the file is missing or cannot be read.
    """
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)
