"""Progress of long loops (batched generation), reported to whoever listens; silent otherwise.

Library code calls ``report(task, advance, total)``; the CLI installs a listener that draws a rich
progress bar with rate and ETA. A context variable rather than a parameter keeps the stage
functions' signatures free of display concerns, and nothing is shared between threads or runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Listener = Callable[[str, int, int], None]
_listener: ContextVar[Listener | None] = ContextVar("stage1_progress_listener", default=None)


def report(task: str, advance: int, total: int) -> None:
    """``advance`` more units of ``task`` (out of ``total``) are done."""
    listener = _listener.get()
    if listener is not None:
        listener(task, advance, total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send every ``report`` made inside the block to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
