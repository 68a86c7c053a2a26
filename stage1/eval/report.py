"""Writing and showing evaluation results: results.json, report.md, chart.png, and a rich table.

The shell around ``stage1.eval.report_markdown`` (pure): files are written atomically; rich and
matplotlib are imported inside the functions that use them, and the chart uses matplotlib's Agg
canvas directly, so no global backend state is touched.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stage1.core.errors import InputError
from stage1.eval.report_markdown import format_points, format_rate, render_markdown
from stage1.io.atomic import atomic_write_bytes, atomic_write_chunks, atomic_write_text, dumps_json
from stage1.io.layout import CHART_FILE as CHART_NAME
from stage1.io.layout import REPORT_FILE as REPORT_NAME
from stage1.io.layout import RESULTS_FILE as RESULTS_NAME


def load_results(path: str | Path, *, missing_hint: str = "run `stage1 evaluate` first") -> dict[str, Any]:
    """Read a ``results.json`` (or a golden result; ``missing_hint`` says how to make the file).

    Raises:
        InputError: missing file, invalid JSON, or not an evaluation results object.
    """
    from stage1.io.readers import read_json_file

    source = Path(path)
    if not source.exists() and not source.is_symlink():
        raise InputError("results file not found", path=source, hint=missing_hint)
    data = read_json_file(source)  # regular file, UTF-8, strict JSON, bounded depth and integers
    if not isinstance(data, dict) or "rates" not in data or "criteria" not in data:
        raise InputError("not an evaluation results file (no 'rates'/'criteria')", path=source)
    return data


def _two_line_rate(cell: dict[str, Any]) -> str:
    """``format_rate`` on two lines (rate and n, then the interval), for narrow terminals."""
    if not cell["n"]:
        return f"— n=0\n({cell['not_applicable']} n/a)"
    return f"{100 * cell['rate']:.1f}% n={cell['n']}\n[{100 * cell['low']:.1f}, {100 * cell['high']:.1f}]"


def rich_summary_table(results: dict[str, Any], variants: list[str] | None = None, *, two_line: bool = False, caption: bool = True):
    """A rich ``Table``: criteria × ``variants`` (default: all), each cell the rate with its interval.

    Significant comparisons are listed in the caption.
    """
    from rich.table import Table

    variants = list(results["variants"] if variants is None else variants)
    confidence = results.get("statistics", {}).get("confidence", 0.95)
    rate = _two_line_rate if two_line else format_rate
    # overflow="fold": should a cell still not fit, it breaks; nothing is cut to "…"
    table = Table(title=f"evaluation: rate [{confidence:.0%} Wilson interval] n", show_lines=two_line)
    table.add_column("criterion", style="bold", overflow="fold")
    for variant in variants:
        table.add_column(variant, justify="right", overflow="fold")
    for name in results["criteria"]:
        table.add_row(name, *(rate(results["rates"][v][name]) for v in variants))
    significant = [c for c in results.get("comparisons", []) if c.get("significant")]
    if significant and caption:  # one comparison a line, left-aligned: a centred paragraph reads badly
        table.caption = "significant:\n" + "\n".join(
            f"  {c['before']}→{c['after']} {c['criterion']} {format_points(c['lift'])} pts" for c in significant
        )
        table.caption_justify = "left"
    return table


ZERO_BAR = 0.012  # a 0% rate is drawn this high (hatched), so it is not mistaken for a missing bar


LABEL_WIDTH = 11  # characters per line of a criterion's axis label


def chart_label(name: str, n: int) -> str:
    """A criterion's axis label: its words wrapped at ``LABEL_WIDTH`` characters, then the applicable n."""
    lines: list[str] = []
    for word in name.split("_"):
        if lines and len(lines[-1]) + 1 + len(word) <= LABEL_WIDTH:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join([*lines, f"n={n}"])


def _variant_bars(axes, results: dict[str, Any], variant: str, positions: list[float], width: float, color) -> None:
    """One variant's bars with Wilson intervals; a 0% rate as a short hatched bar, n/a as text."""
    cells = [results["rates"][variant][name] for name in results["criteria"]]
    rates = [cell["rate"] if cell["rate"] is not None else 0.0 for cell in cells]
    below = [max(0.0, r - c["low"]) if c["rate"] is not None else 0.0 for r, c in zip(rates, cells)]
    above = [max(0.0, c["high"] - r) if c["rate"] is not None else 0.0 for r, c in zip(rates, cells)]
    axes.bar(positions, rates, width, yerr=[below, above], capsize=3, label=variant, color=color, ecolor="0.3")
    for x, cell in zip(positions, cells):
        if cell["rate"] is None:
            axes.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="0.4")
        elif cell["rate"] == 0:
            axes.bar([x], [ZERO_BAR], width, color=color, hatch="///", edgecolor="0.2", linewidth=0.5)
            axes.text(x, ZERO_BAR + 0.01, "0%", ha="center", va="bottom", fontsize=7,
                      bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})


class RichSummary:
    """The evaluation table at the console's width: one table when it fits, else the variants in as
    many tables as needed, each with two-line cells, so nothing is cut at 80 columns."""

    def __init__(self, results: dict[str, Any]):
        self.results = results

    def _widths(self, two_line: bool) -> tuple[int, int]:
        results, cells = self.results, []
        for variant in results["variants"]:
            for name in results["criteria"]:
                text = (_two_line_rate if two_line else format_rate)(results["rates"][variant][name])
                cells.extend(text.split("\n"))
        return max(map(len, [*results["criteria"], "criterion"])) + 3, max(map(len, [*cells, *results["variants"]])) + 3

    def __rich_console__(self, console, options):
        variants = list(self.results["variants"])
        label, cell = self._widths(two_line=False)
        if label + cell * len(variants) + 1 <= options.max_width:
            yield rich_summary_table(self.results)
            return
        label, cell = self._widths(two_line=True)
        per_table = max(1, (options.max_width - label - 1) // cell)
        chunks = [variants[start:start + per_table] for start in range(0, len(variants), per_table)]
        for index, chunk in enumerate(chunks):
            yield rich_summary_table(self.results, chunk, two_line=True, caption=index == len(chunks) - 1)


#: Up to this many variants the chart groups one bar per variant under each criterion; a sweep of
#: more (checkpoints) is drawn as one line per criterion across the variants, on a canvas of fixed
#: size (bars at 0.3 in each made a 97-variant sweep a 236-inch, 60 MB canvas that no one can read).
MAX_BAR_VARIANTS = 16
MAX_VARIANT_TICKS = 40


def _png(figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _axes_setup(axes, results: dict[str, Any], subject: str) -> None:
    axes.set_ylim(0, 1.25)  # headroom for the legend above the bars
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_yticklabels(["0%", "20%", "40%", "60%", "80%", "100%"])
    axes.grid(axis="y", color="0.9", linewidth=0.8)
    axes.set_axisbelow(True)
    confidence = results.get("statistics", {}).get("confidence", 0.95)
    axes.set_ylabel(f"rate ({confidence:.0%} Wilson interval)")
    axes.set_title(f"stage1 evaluation on {results.get('num_items', '?')} items ({subject})")


def render_chart_png(results: dict[str, Any]) -> bytes:
    """A grouped bar chart: each criterion's rate per variant with its Wilson interval, as PNG bytes
    (more than ``MAX_BAR_VARIANTS`` variants: ``render_sweep_png``).

    Each criterion's label gives its applicable n (the same for every variant: n/a is decided by the
    item); a 0% rate is a short hatched bar marked "0%", so it cannot be read as a missing variant.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    criteria, variants = results["criteria"], results["variants"]
    if len(variants) > MAX_BAR_VARIANTS:
        return render_sweep_png(results)
    figure = Figure(figsize=(max(9.0, 0.3 * len(criteria) * max(1, len(variants)) + 3.0), 5.4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(variants))
    colors = [f"C{index % 10}" for index in range(len(variants))]
    for index, variant in enumerate(variants):
        positions = [i + (index - (len(variants) - 1) / 2) * width for i in range(len(criteria))]
        _variant_bars(axes, results, variant, positions, width, colors[index])
    first = results["rates"][variants[0]] if variants else {}
    axes.set_xticks(range(len(criteria)))
    axes.set_xticklabels([chart_label(name, first.get(name, {}).get("n", 0)) for name in criteria], fontsize=9)
    _axes_setup(axes, results, "n: items each criterion applies to")
    axes.legend(fontsize=9, loc="upper center", ncols=max(1, len(variants)), frameon=False)
    return _png(figure)


def render_sweep_png(results: dict[str, Any]) -> bytes:
    """Many variants: one line per criterion through its rate at each variant (in results order),
    its Wilson interval a band; n/a leaves a gap. Fixed size whatever the number of variants."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    criteria, variants = results["criteria"], results["variants"]
    figure = Figure(figsize=(14.0, 6.0), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    positions = list(range(len(variants)))
    for index, name in enumerate(criteria):
        cells = [results["rates"][variant][name] for variant in variants]
        rates = [float("nan") if c["rate"] is None else c["rate"] for c in cells]
        lows = [float("nan") if c["rate"] is None else c["low"] for c in cells]
        highs = [float("nan") if c["rate"] is None else c["high"] for c in cells]
        color = f"C{index % 10}"
        label = chart_label(name, cells[0]["n"]).replace("\n", " ")
        axes.plot(positions, rates, color=color, linewidth=1.2, marker="." if len(variants) <= 200 else None, label=label)
        axes.fill_between(positions, lows, highs, color=color, alpha=0.12, linewidth=0)
    step = max(1, -(-len(variants) // MAX_VARIANT_TICKS))
    axes.set_xticks(positions[::step])
    axes.set_xticklabels(variants[::step], rotation=90, fontsize=7)
    axes.set_xlim(-0.5, len(variants) - 0.5)
    _axes_setup(axes, results, f"{len(variants)} variants; n: items each criterion applies to")
    axes.legend(fontsize=8, loc="upper center", ncols=4, frameon=False)
    return _png(figure)


#: Placeholder for the per-item list while the rest of results.json is indented.
_ITEMS_SLOT = "\x00items\x00"


def item_line(item: dict[str, Any]) -> str:
    """One entry of results.json's ``items`` as its compact line (sorted keys, the C encoder)."""
    return json.dumps(item, ensure_ascii=False, sort_keys=True)


#: Characters gathered before a piece of results.json is handed on (few writes, little held).
CHUNK_CHARS = 1 << 16


def _indented_pieces(results: dict[str, Any], item_lines: Iterable[str]) -> Iterator[str]:
    """``dumps_json`` of ``results`` piece by piece (the standard library's indenting encoder is a
    generator; ``json.dumps`` joins its pieces into one string), ``items`` taken from ``item_lines``."""
    slot = json.dumps(_ITEMS_SLOT, ensure_ascii=False)
    encoder = json.JSONEncoder(ensure_ascii=False, indent=2, sort_keys=True)
    for piece in encoder.iterencode({**results, "items": _ITEMS_SLOT}):
        if piece != slot:
            yield piece
            continue
        first = True
        for line in item_lines:
            yield ("[\n    " if first else ",\n    ") + line
            first = False
        yield "[]" if first else "\n  ]"
    yield "\n"


def results_json_chunks(results: dict[str, Any], item_lines: Iterable[str]) -> Iterator[str]:
    """results.json's text in pieces: sorted keys, indented, except that each entry of ``items`` (one
    per evaluation item, with every variant's outcome: nearly all of the file on a sweep) is one
    compact line, taken from ``item_lines`` (``results["items"]`` is not read). The standard library's
    C encoder serialises only without indentation, and the indented form of those entries took most
    of ``stage1 score``'s writing time; the file stays one JSON value. Nothing is joined whole: the
    head of a sweep (its flips list item ids) is itself tens of megabytes as one string."""
    gathered: list[str] = []
    size = 0
    for piece in _indented_pieces(results, item_lines):
        gathered.append(piece)
        size += len(piece)
        if size >= CHUNK_CHARS:
            yield "".join(gathered)
            gathered, size = [], 0
    yield "".join(gathered)


def results_json(results: dict[str, Any]) -> str:
    """results.json's text (``results_json_chunks`` of ``results["items"]``; without items, all indented)."""
    if not results.get("items"):
        return dumps_json(results)
    return "".join(results_json_chunks(results, map(item_line, results.get("items") or [])))


def write_reports(out_dir: str | Path, results: dict[str, Any], *, item_lines: Iterable[str] | None = None) -> dict[str, Path]:
    """Write results.json, report.md and chart.png into ``out_dir`` (each atomically).

    ``item_lines``: the entries of results.json's ``items``, as ``item_line`` writes them, streamed into
    the file (a sweep's items need not be held); ``results["items"]`` then holds only the rows
    report.md shows (``report_flips.shown_outcomes``)."""
    out = Path(out_dir)
    lines = map(item_line, results.get("items") or []) if item_lines is None else item_lines
    return {
        "results": atomic_write_chunks(out / RESULTS_NAME, results_json_chunks(results, lines)),
        "report": atomic_write_text(out / REPORT_NAME, render_markdown(results)),
        "chart": atomic_write_bytes(out / CHART_NAME, render_chart_png(results)),
    }
