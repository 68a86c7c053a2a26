"""Progress reports reach a listener only inside its block, and the rich listener draws them."""

from __future__ import annotations

from stage1.core import progress


def test_reports_reach_the_listener_only_while_listening():
    seen = []
    progress.report("generating", 1, 4)  # nobody listens: silently ignored
    with progress.listening(lambda task, advance, total: seen.append((task, advance, total))):
        progress.report("generating", 2, 4)
        progress.report("generating", 2, 4)
    progress.report("generating", 1, 4)
    assert seen == [("generating", 2, 4), ("generating", 2, 4)]


def test_rich_listener_finishes_and_clears_its_tasks():
    from rich.console import Console

    from stage1.console import RichProgressListener

    console = Console(record=True, force_terminal=False, width=100)
    listener = RichProgressListener(console)
    with progress.listening(listener):
        progress.report("generating", 3, 6)
        assert listener.progress is not None and "generating" in listener.tasks
        progress.report("generating", 3, 6)
    assert listener.tasks == {} and listener.progress is None
