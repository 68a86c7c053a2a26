"""``report.md``: the tables a person reads, rendered from the results dict alone.

Every number here is formatted from ``results.json`` by the helpers below, so the Markdown and the
JSON cannot disagree (a test parses the tables back and compares). Pure: dict in, string out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stage1.eval.summary import POOLED_CATEGORY

MAX_FLIPS_SHOWN = 10
MAX_RESPONSE_CHARS = 240


def format_rate(cell: dict[str, Any]) -> str:
    """``"78.0% [68.9, 85.0] n=100"``; a dash when no item applies."""
    if not cell["n"]:
        return f"— n=0 ({cell['not_applicable']} n/a)"
    return f"{100 * cell['rate']:.1f}% [{100 * cell['low']:.1f}, {100 * cell['high']:.1f}] n={cell['n']}"


def format_points(value: float | None) -> str:
    """A difference of rates in percentage points, signed (``+12.5``)."""
    return "—" if value is None else f"{100 * value:+.1f}"


def format_p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def cell_text(text: str, limit: int = MAX_RESPONSE_CHARS) -> str:
    """Text safe inside a Markdown table cell: pipes escaped, newlines as <br>, long text cut."""
    shortened = text if len(text) <= limit else text[: limit - 1] + "…"
    escaped = shortened.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")
    return escaped or "*(empty)*"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def rates_table(rates: dict[str, dict[str, dict[str, Any]]], variants: Sequence[str], criteria: Sequence[str]) -> list[str]:
    """Rows are criteria, columns variants; each cell is ``format_rate``."""
    rows = [[name] + [format_rate(rates[v][name]) for v in variants] for name in criteria]
    return table(["criterion", *variants], rows)


def comparisons_table(comparisons: Sequence[dict[str, Any]], confidence: float) -> list[str]:
    header = ["before → after", "criterion", "n", "before", "after", "lift (pts)", f"{confidence:.0%} bootstrap CI",
              "wins / losses", "McNemar p", "BH p", "Cohen's h", "significant"]
    rows = []
    for c in comparisons:
        boot = c["bootstrap"]
        interval = "—" if boot is None else f"[{format_points(boot['low'])}, {format_points(boot['high'])}]"
        test = c["mcnemar"]
        rows.append([
            f"{c['before']} → {c['after']}",
            c["criterion"],
            str(c["n"]),
            "—" if c["rate_before"] is None else f"{100 * c['rate_before']:.1f}%",
            "—" if c["rate_after"] is None else f"{100 * c['rate_after']:.1f}%",
            format_points(c["lift"]),
            interval,
            f"{c['wins']} / {c['losses']}",
            "—" if test is None else f"{format_p(test['p_value'])} ({test['method']})",
            format_p(c["p_adjusted"]),
            "—" if c["cohens_h"] is None else f"{c['cohens_h']:+.3f}",
            "yes" if c["significant"] else "no",
        ])
    return table(header, rows)


def setup_section(results: dict[str, Any]) -> list[str]:
    provenance = results.get("provenance", {})
    lines = ["## Setup", ""]
    rows = [[key, f"`{value}`" if key == "prompt format" else _plain(value)] for key, value in _setup_rows(provenance, results) if value]
    lines += table(["what", "value"], rows)
    variants = provenance.get("variants", {})
    if variants:
        lines += ["", "### Checkpoints", ""]
        header = ["variant", "model", "adapter", "format", "quantisation", "model sha256", "adapter sha256"]
        lines += table(header, [[
            name, str(v.get("model_dir")), str(v.get("adapter_dir") or "—"), "wrapped" if v.get("use_format") else "raw instruction",
            str(v.get("quantization")), str(v.get("model_hash", "—"))[:16], str(v.get("adapter_hash") or "—")[:16],
        ] for name, v in variants.items()])
    return lines


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_plain(inner)}" for key, inner in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(repr(v) for v in value) + "]"
    return cell_text(str(value), 400)


def _setup_rows(provenance: dict[str, Any], results: dict[str, Any]) -> list[tuple[str, Any]]:
    stats = results.get("statistics", {})
    items = provenance.get("items", {})
    rows = [
        ("prompt format", provenance.get("prompt_format", "").replace("\n", "\\n")),
        ("decoding", provenance.get("decoding", "")),
        ("items", f"{results.get('num_items')} from {items.get('path', '?')} (sha256 {str(items.get('sha256', '?'))[:16]})"),
        ("seeds", provenance.get("seeds", "")),
        ("statistics", f"Wilson {stats.get('confidence', 0.95):.0%} intervals; McNemar (exact below 25 discordant pairs); "
                       f"Benjamini–Hochberg q={stats.get('q')}; paired bootstrap {stats.get('bootstrap_samples')} samples; "
                       f"significant means {stats.get('significance')}"),
        ("n/a policy", "an n/a verdict (decided by the item alone) is left out of numerator and denominator"),
    ]
    rows.append(("leakage check", leakage_text(provenance.get("leakage"))))
    for name, digest in sorted(provenance.get("training_data", {}).items()):
        rows.append((f"training data {name}", str(digest)[:16]))
    return rows


def leakage_text(leakage: dict[str, Any] | None) -> str:
    """What the leakage gate checked, in words; says so plainly when it did not run."""
    if not leakage:
        return "not recorded"
    if not leakage.get("checked"):
        return f"NOT CHECKED ({leakage.get('reason', 'no reason recorded')})"
    files = ", ".join(f"{Path(name).parent.name}/{Path(name).name}: {count} rows" for name, count in sorted(leakage.get("training_rows", {}).items()))
    return f"passed: {leakage.get('leaks', 0)} of {leakage.get('eval_items')} items found in training data ({files})"


def category_section(results: dict[str, Any]) -> list[str]:
    categories = results["categories"]
    lines = ["## By category", ""]
    lines.append(f"Categories with at least {categories['min_items']} items get their own table; smaller ones are pooled"
                 + (f" into '{POOLED_CATEGORY}' ({', '.join(categories['pooled'])})." if categories["pooled"] else "."))
    for cell, rates in categories["rates"].items():
        size = categories["sizes"][cell]
        note = "" if size >= categories["min_items"] else f" — below {categories['min_items']} items: read with care"
        lines += ["", f"### {cell} ({size} items){note}", ""]
        lines += rates_table(rates, results["variants"], results["criteria"])
    return lines


def flips_section(results: dict[str, Any], max_shown: int = MAX_FLIPS_SHOWN) -> list[str]:
    by_id = {row["id"]: row for row in results["items"]}
    lines = ["## Flipped items", "", "Items whose verdict changed between the two models: wins went fail → pass, losses pass → fail."]
    current_pair = None
    for flip in results["flips"]:
        if not flip["wins"] and not flip["losses"]:
            continue
        pair = (flip["before"], flip["after"])
        if pair != current_pair:
            lines += ["", f"### {pair[0]} → {pair[1]}"]
            current_pair = pair
        lines += ["", f"#### {flip['criterion']}: {len(flip['wins'])} wins, {len(flip['losses'])} losses", ""]
        rows = []
        for outcome, ids in (("win", flip["wins"]), ("loss", flip["losses"])):
            for item_id in ids[:max_shown]:
                row = by_id[item_id]
                rows.append([outcome, item_id, cell_text(row["instruction"], 120),
                             cell_text(row["outcomes"][pair[0]]["response"]), cell_text(row["outcomes"][pair[1]]["response"])])
        lines += table(["", "id", "instruction", pair[0], pair[1]], rows)
        hidden = max(0, len(flip["wins"]) - max_shown) + max(0, len(flip["losses"]) - max_shown)
        if hidden:
            lines += ["", f"({hidden} more in results.json)"]
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """The whole report: setup, skipped variants, rates, comparisons, categories, flips."""
    lines = ["# Evaluation report", ""]
    lines += setup_section(results)
    skipped = results.get("skipped_variants", {})
    lines += ["", "## Skipped", ""]
    if skipped or results.get("skipped_comparisons"):
        lines += [f"- variant `{name}`: {reason}" for name, reason in skipped.items()]
        lines += [f"- comparison {c['before']} → {c['after']}: {c['reason']}" for c in results.get("skipped_comparisons", [])]
    else:
        lines.append("Nothing was skipped.")
    confidence = results["statistics"]["confidence"]
    lines += ["", "## Rates", "", f"Rate of items passing each criterion, with its {confidence:.0%} Wilson interval and the applicable n.", ""]
    lines += rates_table(results["rates"], results["variants"], results["criteria"])
    first = results["rates"][results["variants"][0]] if results["variants"] else {}
    not_applicable = [f"{name} {first[name]['not_applicable']}" for name in results["criteria"] if first.get(name, {}).get("not_applicable")]
    if not_applicable:
        lines += ["", "Items where a criterion does not apply (left out of its rate): " + ", ".join(not_applicable) + "."]
    lines += ["", "## Paired comparisons", ""]
    lines += comparisons_table(results["comparisons"], confidence) if results["comparisons"] else ["No pair of variants was compared."]
    lines += [""] + category_section(results)
    lines += [""] + flips_section(results)
    return "\n".join(lines) + "\n"
