"""``report.md``: the tables a person reads, rendered from the results dict alone.

Every number here is formatted from ``results.json`` by the helpers below, so the Markdown and the
JSON cannot disagree (a test parses the tables back and compares). Pure: dict in, string out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stage1.eval.report_flips import MAX_FLIPS_SHOWN, shown_flips
from stage1.eval.report_summary import summary_section
from stage1.eval.summary import POOLED_CATEGORY

MAX_RESPONSE_CHARS = 240
SLICE_NOTE = ("Items marked with a slice, and the rest, each with the rates and the paired comparisons of the whole set (Benjamini–Hochberg"
              " within the slice). `new_wording`: instructions phrased unlike the training templates; a gap to `rest` is what the model"
              " memorised rather than learned.")


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
              "wins / losses", "McNemar p", "BH p", "Cohen's h", "significant", "detectable (pts)"]
    rows = []
    for c in comparisons:
        detectable = c.get("detectable_lift")
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
            "—" if detectable is None else f"{100 * detectable:.1f} (α {c['detectable_lift_alpha']:.2g})",
        ])
    return table(header, rows)


FAMILY_TITLES = {"format_sensitivity": "format-sensitivity check", "pair_sources": "pair-source arms (training.dpo_arms)"}


def family_sections(results: dict[str, Any]) -> list[str]:
    """One table per Benjamini–Hochberg family, then what each comparison could have detected."""
    comparisons = results["comparisons"]
    stats = results["statistics"]
    confidence = stats["confidence"]
    lines = [f"Benjamini–Hochberg runs within each family (q = {stats.get('q')}); a family's p-values do not "
             "move another's threshold. `detectable` is the smallest lift McNemar's test finds with "
             f"{stats.get('power', 0.8):.0%} power for the comparison's n and observed discordance, at the threshold "
             "Benjamini–Hochberg applies to that cell in its family, α = (k + 1)·q/m (m testable cells in the family, "
             "k other cells it rejects; q/m when it rejects nothing else), not at q itself."]
    for family in dict.fromkeys(c.get("family", "all") for c in comparisons):
        members = [c for c in comparisons if c.get("family", "all") == family]
        title = FAMILY_TITLES.get(family, f"family `{family}`")
        lines += ["", f"### {title[0].upper() + title[1:]}", ""]
        lines += comparisons_table(members, confidence)
        lines += [""] + [f"- {line}" for line in detectable_lines(members)]
    return lines


def detectable_lines(comparisons: Sequence[dict[str, Any]]) -> list[str]:
    """Per compared pair: "with 241 items, lifts under 6.1 points (criterion) ... are below what this evaluation can detect"."""
    lines = []
    for pair in dict.fromkeys((c["before"], c["after"]) for c in comparisons):
        cells = [c for c in comparisons if (c["before"], c["after"]) == pair and c["n"]]
        known = sorted((c for c in cells if c.get("detectable_lift") is not None), key=lambda c: c["detectable_lift"])
        undetectable = [c["criterion"] for c in cells if c.get("detectable_lift") is None]
        text = f"{pair[0]} → {pair[1]}: "
        if known:
            low, high = known[0], known[-1]
            text += (f"with {low['n']} items, lifts under {100 * low['detectable_lift']:.1f} points are below what this "
                     f"evaluation can detect ({low['criterion']}")
            if high is not low:
                text += f"; least sensitive: {high['criterion']}, {high['n']} items, {100 * high['detectable_lift']:.1f} points"
            text += ")"
        else:
            text += "no lift is detectable" if cells else "nothing to compare"
        if undetectable:
            text += f"; too few discordant items to detect any lift on {', '.join(undetectable)}"
        lines.append(text + ".")
    return lines


def length_section(results: dict[str, Any]) -> list[str]:
    """Response length per variant, and the significant lifts at equal response length."""
    lines = ["## Response length", "",
             "Words are whitespace-separated words of the parsed response; tokens are generated tokens as counted by "
             "the generator (— where the responses were generated elsewhere without a count)."]
    rows = []
    for variant, cell in results.get("lengths", {}).items():
        rows.append([variant, str(cell["responses"]), _number(cell["words"]["mean"]), _number(cell["words"]["median"]),
                     _number(cell["tokens"]["mean"]), _number(cell["tokens"]["median"])])
    lines += [""] + table(["variant", "responses", "mean words", "median words", "mean tokens", "median tokens"], rows)
    significant = [c for c in results["comparisons"] if c["significant"] and c.get("length_controlled")]
    lines += ["", "### Significant lifts at equal response length", "",
              "Every discordant item of each significant comparison, in a paired (conditional) logistic model of which way "
              "it went on the log ratio of the two responses' word counts: the lift at equal length, and its Wald p. "
              "No item is dropped for its length, so the control does not select on what the variant changed; a lift "
              "that shrinks toward 0 here came with longer (or shorter) answers. An interval as wide as the lift itself "
              "means the lengths separate the outcomes (every win came with a longer answer): length and variant cannot "
              "be told apart on these items."]
    if not significant:
        return lines + ["", "No significant comparison."]
    rows = []
    for c in significant:
        m = c["length_controlled"]
        rows.append([f"{c['before']} → {c['after']}", c["criterion"], str(c["n"]), format_points(c["lift"]), str(m["discordant"]),
                     format_points(m["lift"]), f"[{format_points(m['low'])}, {format_points(m['high'])}]", format_p(m["p_value"]),
                     f"{m['length_slope']:+.2f}"])
    return lines + [""] + table(["before → after", "criterion", "n", "lift (pts)", "discordant", "lift at equal length (pts)",
                                 "95% interval", "p at equal length", "length slope (log-odds)"], rows)


def pair_length_section(pair_lengths: dict[str, dict[str, Any]]) -> list[str]:
    """Per negative kind of the DPO training pairs: how often the rejected is the longer one."""
    lines = ["## Preference pairs: length by negative kind", "",
             "Of the DPO training pairs, per kind: the share whose rejected has more words than its chosen, the share of "
             "ties, and the median words of each side. A share far from 50% is a length cue DPO can learn instead of content. "
             "Shortcut baselines (content-blind, 50% is chance): the better length rule, and a cross-validated classifier on "
             "each side's first three words and length."]
    rows = [[kind, str(cell["pairs"]), _percent(cell["rejected_longer"]), _percent(cell["equal"]),
             _number(cell["median_chosen_words"]), _number(cell["median_rejected_words"]),
             _percent((cell.get("shortcuts") or {}).get("length_rule")), _percent((cell.get("shortcuts") or {}).get("classifier"))]
            for kind, cell in pair_lengths.items()]
    return lines + [""] + table(["kind", "pairs", "rejected longer", "equal", "median chosen words", "median rejected words",
                                 "length rule", "opening + length classifier"], rows)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


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
                       f"Benjamini–Hochberg q={stats.get('q')} within each family ({_families(stats)}); paired bootstrap {stats.get('bootstrap_samples')} samples; "
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


def slice_section(results: dict[str, Any]) -> list[str]:
    """Each slice's rates and paired comparisons (``eval/slices.py``), or nothing when no item has a slice."""
    if not results.get("slices"):
        return []
    confidence = results["statistics"]["confidence"]
    lines = ["## By slice", "", SLICE_NOTE]
    for name, cell in results["slices"].items():
        lines += ["", f"### {name} ({cell['size']} items)", ""] + rates_table(cell["rates"], results["variants"], results["criteria"])
        lines += ([""] + comparisons_table(cell["comparisons"], confidence)) if cell["comparisons"] else []
    return lines


def flips_section(results: dict[str, Any], max_shown: int = MAX_FLIPS_SHOWN) -> list[str]:
    by_id = {row["id"]: row for row in results["items"]}
    lines = ["## Flipped items", "", "Items whose verdict changed between the two models: wins went fail → pass, losses pass → fail."]
    current_pair = None
    for flip, shown in shown_flips(results, max_shown):
        pair = (flip["before"], flip["after"])
        if pair != current_pair:
            lines += ["", f"### {pair[0]} → {pair[1]}"]
            current_pair = pair
        lines += ["", f"#### {flip['criterion']}: {len(flip['wins'])} wins, {len(flip['losses'])} losses", ""]
        rows = []
        for outcome, item_id in shown:
            row = by_id[item_id]
            rows.append([outcome, item_id, cell_text(row["instruction"], 120),
                         cell_text(row["outcomes"][pair[0]]["response"]), cell_text(row["outcomes"][pair[1]]["response"])])
        lines += table(["", "id", "instruction", pair[0], pair[1]], rows)
        hidden = max(0, len(flip["wins"]) - max_shown) + max(0, len(flip["losses"]) - max_shown)
        if hidden:
            lines += ["", f"({hidden} more in results.json)"]
    return lines


def dpo_training_section(results: dict[str, Any]) -> list[str]:
    """What DPO did to each side of its held-out pairs, per DPO variant (from its training manifest)."""
    facts = results.get("dpo_training") or {}
    if not facts:
        return []
    lines = ["## DPO training", "",
             "Log-prob shift = log π − log π_ref of a whole completion (nats), on the held-out pairs after training. "
             "A negative chosen shift is likelihood displacement: DPO lowered the answers it prefers.", ""]
    rows = []
    for name, fact in facts.items():
        shift = fact["logp_shift"]
        rows.append([f"`{name}`", "all", str(shift["count"]), f"{fact['reward_accuracy']:.3f}", f"{fact['reward_margin']:+.4f}",
                     f"{shift['mean_chosen']:+.3f}", f"{shift['chosen_fell_share']:.0%}", f"{shift['mean_rejected']:+.3f}"])
        for group in ("by_source", "by_kind"):
            for label, rewards in (fact.get(group) or {}).items():
                side = shift[group].get(label, {})
                rows.append([f"`{name}`", f"{group[3:]} `{label}`", str(rewards["count"]), f"{rewards['reward_accuracy']:.3f}",
                             f"{rewards['mean_margin']:+.4f}", f"{side.get('mean_chosen', 0.0):+.3f}",
                             f"{side.get('chosen_fell_share', 0.0):.0%}", f"{side.get('mean_rejected', 0.0):+.3f}"])
    lines += table(["variant", "pairs", "n", "reward accuracy", "margin", "chosen shift", "chosen fell", "rejected shift"], rows)
    for name, fact in facts.items():
        pairs = fact.get("pairs") or {}
        if pairs.get("train_by_source"):
            mix = ", ".join(f"{count} {source}" for source, count in pairs["train_by_source"].items())
            chosen_by = pairs.get("selection_criteria")
            criteria = f"; policy pairs chosen by {', '.join(chosen_by)}" if chosen_by else ""
            lines += ["", f"`{name}` trained on {mix} pairs{criteria}."]
    warnings = [f"- `{name}` warning: {warning}" for name, fact in facts.items() for warning in fact.get("warnings") or []]
    return lines + ([""] + warnings if warnings else [])


def arms_section(results: dict[str, Any]) -> list[str]:
    """The DPO arms side by side (``training.dpo_arms``): which pairs trained each, their rates next
    to SFT's and ``dpo``'s, and each arm-against-arm comparison per criterion. Empty without arms."""
    described = results.get("provenance", {}).get("variants", {})
    arms = [name for name in results["variants"] if described.get(name, {}).get("pairs_source")]
    if not arms:
        return []
    training = results.get("dpo_training") or {}
    lines = ["## Pair-source arms", "",
             "Each arm is a new DPO adapter on the same SFT model, its reference, trained on the pairs of one source only "
             "(`training.dpo_arms`; train and eval split as in `pairs/`); `dpo` trained on all of them.", ""]
    rows = []
    for name in arms:
        fact = training.get(name) or {}
        pairs = fact.get("pairs") or {}
        source = described[name]["pairs_source"]
        accuracy, margin = fact.get("reward_accuracy"), fact.get("reward_margin")
        rows.append([f"`{name}`", f"{source} pairs", str((pairs.get("train_by_source") or {}).get(source, "—")),
                     str(pairs.get("eval_pairs", "—")), "—" if accuracy is None else f"{accuracy:.3f}",
                     "—" if margin is None else f"{margin:+.4f}"])
    lines += table(["variant", "trained on", "train pairs", "eval pairs", "eval reward accuracy", "eval margin"], rows)
    shown = [name for name in ("sft", "dpo") if name in results["variants"]] + arms
    if shown == list(results["variants"]):  # the rates table above holds exactly these: not printed twice
        lines += ["", "Their rates are the columns of the rates table above."]
    else:
        lines += ["", "Rates side by side:", ""] + rates_table(results["rates"], shown, results["criteria"])
    between = [c for c in results["comparisons"] if c["before"] in arms and c["after"] in arms]
    lines += [""] if between else []
    for c in between:
        rates = "—" if c["rate_before"] is None else f"{100 * c['rate_before']:.1f}% → {100 * c['rate_after']:.1f}%"
        lines.append(f"- {c['before']} → {c['after']}, {c['criterion']}: {rates}, lift {format_points(c['lift'])} pts, "
                     f"BH p {format_p(c['p_adjusted'])}, {'significant' if c['significant'] else 'not significant'}")
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """The whole report: a summary, setup, skipped variants, rates, comparisons by family with what each can detect,
    lengths, pair lengths by kind (when the training pairs were read), categories, flips."""
    lines = ["# Evaluation report", ""]
    lines += summary_section(results) + [""]
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
    arms = arms_section(results)
    lines += [""] + arms if arms else []
    lines += ["", "## Paired comparisons", ""]
    lines += family_sections(results) if results["comparisons"] else ["No pair of variants was compared."]
    lines += [""] + length_section(results)
    if results.get("pair_lengths"):
        lines += [""] + pair_length_section(results["pair_lengths"])
    lines += [""] + category_section(results)
    lines += ([""] + slice_section(results)) if results.get("slices") else []
    lines += [""] + flips_section(results)
    dpo = dpo_training_section(results)
    lines += [""] + dpo if dpo else []
    return "\n".join(lines) + "\n"


def _families(stats: dict[str, Any]) -> str:
    families = stats.get("families") or {}
    return "; ".join(f"{name}: {', '.join(members)}" for name, members in families.items()) or "one family"
