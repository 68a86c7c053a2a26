"""The summary that opens ``report.md``: what improved, what got worse, what this evaluation cannot
detect, and which model it ran on and what that model is. Pure: the results dict in, lines out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Below either, the model is a test model: its numbers show the pipeline runs, not what training does.
TEST_MODEL_MAX_HIDDEN = 512
TEST_MODEL_MAX_LAYERS = 4
MAX_LISTED = 8  # significant cells listed per direction; the rest are counted
FIXED_LIMITS = (
    "The criteria are rules: they read the form of an answer and the answer it commits to, not its quality, "
    "helpfulness or style; an open-ended item is judged for form and topic only.",
    "Greedy decoding, one response per item: a lift is a lift of the greedy answer, not of the sampling distribution.",
)


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _cell(c: dict[str, Any]) -> str:
    return (f"{c['criterion']} {_points(c['lift'])} pts ({100 * c['rate_before']:.1f}% → {100 * c['rate_after']:.1f}%, "
            f"n={c['n']}, BH p {c['p_adjusted']:.2g})")


def _direction(comparisons: Sequence[dict[str, Any]], sign: int) -> list[str]:
    cells = [c for c in comparisons if c["significant"] and c["lift"] is not None and sign * c["lift"] > 0]
    cells.sort(key=lambda c: -abs(c["lift"]))
    lines = [f"{c['before']} → {c['after']}: {_cell(c)}" for c in cells[:MAX_LISTED]]
    if len(cells) > MAX_LISTED:
        lines.append(f"and {len(cells) - MAX_LISTED} more (see the comparison tables)")
    return lines or ["nothing significant"]


def describe_model(facts: dict[str, Any] | None, model_dir: Any) -> str:
    """"`runs/tiny/model`: qwen2, 2 layers, hidden size 64, 0.6 MB of weights (a test model: ...)"."""
    if not facts:
        return f"`{model_dir}` (no config.json facts recorded)"
    parts = [str(facts.get("model_type", "unknown architecture"))]
    if "num_hidden_layers" in facts:
        parts.append(f"{facts['num_hidden_layers']} layers")
    if "hidden_size" in facts:
        parts.append(f"hidden size {facts['hidden_size']}")
    if facts.get("weights_bytes"):
        parts.append(f"{facts['weights_bytes'] / 1e6:,.1f} MB of weights")
    if facts.get("name_or_path"):
        parts.append(f"from {facts['name_or_path']}")
    text = f"`{model_dir}`: " + ", ".join(parts)
    small = facts.get("hidden_size", TEST_MODEL_MAX_HIDDEN + 1) <= TEST_MODEL_MAX_HIDDEN or \
        facts.get("num_hidden_layers", TEST_MODEL_MAX_LAYERS + 1) <= TEST_MODEL_MAX_LAYERS
    if small:
        text += (". This is a test model, far too small to answer anything: its numbers show that the pipeline runs "
                 "and measures, not what this training does to a real model")
    return text


def _model_line(results: dict[str, Any]) -> str:
    variants = (results.get("provenance") or {}).get("variants") or {}
    if not variants:
        return "not recorded (responses scored without the models)"
    base = variants.get("base") or next(iter(variants.values()))
    return describe_model(base.get("model"), base.get("model_dir"))


def _cannot_detect(results: dict[str, Any]) -> list[str]:
    lines = []
    comparisons = results["comparisons"]
    for pair in dict.fromkeys((c["before"], c["after"]) for c in comparisons):
        cells = [c for c in comparisons if (c["before"], c["after"]) == pair and c["n"]]
        known = [c["detectable_lift"] for c in cells if c.get("detectable_lift") is not None]
        blind = [c["criterion"] for c in cells if c.get("detectable_lift") is None]
        text = f"{pair[0]} → {pair[1]}: "
        if known:
            text += f"lifts under {100 * min(known):.1f}–{100 * max(known):.1f} points (by criterion) at 80% power after the family's correction"
            text += f"; no lift at all on {', '.join(blind)} (too few items that changed)" if blind else ""
        else:
            text += "no lift on any criterion (too few items that changed)"
        lines.append(text)
    seeds = results.get("seeds")
    if not seeds or len(seeds) < 2:
        lines.append("Training noise: each variant was trained once (one seed), so every lift is a single draw of it "
                     "(`python -m stage1.eval.seeds` reads one run per seed together).")
    return lines + list(FIXED_LIMITS)


def summary_section(results: dict[str, Any]) -> list[str]:
    """The opening summary of the report."""
    comparisons = results.get("comparisons") or []
    tested = [c for c in comparisons if c.get("mcnemar") is not None]
    lines = ["## Summary", "", f"- **Model:** {_model_line(results)}.",
             f"- **Evaluated:** {', '.join(results['variants'])} on {results['num_items']} items; "
             f"{sum(c['significant'] for c in tested)} of {len(tested)} tested comparison cells significant."]
    lines += ["- **Improved:**"] + [f"  - {line}" for line in _direction(comparisons, +1)]
    lines += ["- **Got worse:**"] + [f"  - {line}" for line in _direction(comparisons, -1)]
    lines += ["- **Cannot detect:**"] + [f"  - {line}" for line in _cannot_detect(results)]
    return lines
