"""What a person sees while training: the bar and the latest metrics, in a fixed order."""

from __future__ import annotations

from rich.console import Console

from stage1.console import METRIC_KEYS, _training_progress, _training_view


def _text(renderable) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def test_the_view_shows_only_known_metrics_in_the_order_of_metric_keys():
    shown = list(METRIC_KEYS[:2])
    metrics = {shown[1]: 0.25, "not_a_metric": 9.0, shown[0]: 1.5}
    text = _text(_training_view(_training_progress(Console()), metrics))
    assert text.index(shown[0]) < text.index(shown[1])
    assert "not_a_metric" not in text and "1.5" in text and "0.25" in text


def test_the_view_with_no_metrics_yet_is_just_the_bar():
    text = _text(_training_view(_training_progress(Console()), {}))
    assert not any(key in text for key in METRIC_KEYS)
