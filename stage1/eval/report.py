"""Writing and showing evaluation results: results.json, report.md, chart.png, and a rich table.

The shell around ``stage1.eval.report_markdown`` (pure): files are written atomically; rich and
matplotlib are imported inside the functions that use them, and the chart uses matplotlib's Agg
canvas directly, so no global backend state is touched.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from stage1.core.errors import InputError
from stage1.eval.report_markdown import format_points, format_rate, render_markdown
from stage1.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from stage1.io.layout import CHART_FILE as CHART_NAME
from stage1.io.layout import REPORT_FILE as REPORT_NAME
from stage1.io.layout import RESULTS_FILE as RESULTS_NAME


def load_results(path: str | Path, *, missing_hint: str = "run `stage1 evaluate` first") -> dict[str, Any]:
    """Read a ``results.json`` (or a golden result; ``missing_hint`` says how to make the file).

    Raises:
        InputError: missing file, invalid JSON, or not an evaluation results object.
    """
    source = Path(path)
    if not source.is_file():
        raise InputError("results file not found", path=source, hint=missing_hint)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"not valid JSON ({error})", path=source) from None
    if not isinstance(data, dict) or "rates" not in data or "criteria" not in data:
        raise InputError("not an evaluation results file (no 'rates'/'criteria')", path=source)
    return data


def rich_summary_table(results: dict[str, Any]):
    """A rich ``Table``: criteria × variants, each cell the rate with its interval.

    Significant comparisons are listed in the caption.
    """
    from rich.table import Table

    variants = results["variants"]
    confidence = results.get("statistics", {}).get("confidence", 0.95)
    table = Table(title=f"evaluation: rate [{confidence:.0%} Wilson interval] n", show_lines=False)
    table.add_column("criterion", style="bold")
    for variant in variants:
        table.add_column(variant, justify="right")
    for name in results["criteria"]:
        table.add_row(name, *(format_rate(results["rates"][v][name]) for v in variants))
    significant = [c for c in results.get("comparisons", []) if c.get("significant")]
    if significant:
        table.caption = "significant: " + "; ".join(
            f"{c['before']}→{c['after']} {c['criterion']} {format_points(c['lift'])} pts" for c in significant
        )
    return table


def render_chart_png(results: dict[str, Any]) -> bytes:
    """A grouped bar chart: each criterion's rate per variant with its Wilson interval, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    criteria, variants = results["criteria"], results["variants"]
    figure = Figure(figsize=(max(8.0, 1.6 * len(criteria)), 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(variants))
    for index, variant in enumerate(variants):
        cells = [results["rates"][variant][name] for name in criteria]
        rates = [cell["rate"] if cell["rate"] is not None else 0.0 for cell in cells]
        below = [max(0.0, r - c["low"]) if c["rate"] is not None else 0.0 for r, c in zip(rates, cells)]
        above = [max(0.0, c["high"] - r) if c["rate"] is not None else 0.0 for r, c in zip(rates, cells)]
        positions = [i + (index - (len(variants) - 1) / 2) * width for i in range(len(criteria))]
        axes.bar(positions, rates, width, yerr=[below, above], capsize=3, label=variant)
    axes.set_xticks(range(len(criteria)))
    axes.set_xticklabels([name.replace("_", "\n") for name in criteria], fontsize=8)
    axes.set_ylim(0, 1.2)  # headroom for the legend above the bars
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    confidence = results.get("statistics", {}).get("confidence", 0.95)
    axes.set_ylabel(f"rate ({confidence:.0%} Wilson interval)")
    axes.set_title(f"stage1 evaluation on {results.get('num_items', '?')} items")
    axes.legend(fontsize=8, loc="upper center", ncols=max(1, len(variants)))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_reports(out_dir: str | Path, results: dict[str, Any]) -> dict[str, Path]:
    """Write results.json, report.md and chart.png into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    return {
        "results": atomic_write_json(out / RESULTS_NAME, results),
        "report": atomic_write_text(out / REPORT_NAME, render_markdown(results)),
        "chart": atomic_write_bytes(out / CHART_NAME, render_chart_png(results)),
    }
