"""Reports: the Markdown tables agree with results.json, the chart is a real PNG, the rich table is complete."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from stage1.core.eval_items import EvalResponse
from stage1.eval.report import CHART_NAME, REPORT_NAME, RESULTS_NAME, load_results, rich_summary_table, write_reports
from stage1.eval.report_markdown import cell_text, leakage_text, render_markdown
from stage1.eval.summary import POOLED_CATEGORY, summarise
from stage1.io.records import read_eval_items, read_records

GOLDEN_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "golden"
RATE_CELL = re.compile(r"^(?P<rate>\d+\.\d)% \[(?P<low>\d+\.\d), (?P<high>\d+\.\d)\] n=(?P<n>\d+)$")


@pytest.fixture(scope="module")
def results() -> dict:
    items = read_eval_items(GOLDEN_DIR / "items.jsonl")
    responses: dict[str, dict[str, EvalResponse]] = {}
    for response in read_records(GOLDEN_DIR / "responses.jsonl", EvalResponse):
        responses.setdefault(response.variant, {})[response.item_id] = response
    summary = summarise(items, responses, pairs=[("base", "sft"), ("sft", "dpo")], confidence=0.95, q=0.05,
                        bootstrap_samples=200, seed=0, min_category_items=4)
    summary["skipped_variants"] = {"dpo": "adapter not found: run/dpo/adapter"}
    summary["provenance"] = {"prompt_format": "Instruction: {instruction}\nResponse: {response}\nEND",
                             "decoding": {"do_sample": False, "max_new_tokens": 48}, "seeds": {"seed": 0},
                             "items": {"path": "items.jsonl", "sha256": "ab" * 32}, "variants": {}}
    return summary


def markdown_section(markdown: str, title: str) -> list[str]:
    lines = markdown.split("\n")
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def table_rows(lines: list[str]) -> list[list[str]]:
    rows = [line for line in lines if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]  # skip header and rule


def test_markdown_rates_match_the_json(results):
    markdown = render_markdown(results)
    rows = table_rows(markdown_section(markdown, "## Rates"))
    assert [row[0] for row in rows] == results["criteria"]
    checked = 0
    for row in rows:
        for variant, cell_text_value in zip(results["variants"], row[1:]):
            cell = results["rates"][variant][row[0]]
            match = RATE_CELL.match(cell_text_value)
            assert match, cell_text_value
            assert float(match["rate"]) == pytest.approx(100 * cell["rate"], abs=0.05)
            assert float(match["low"]) == pytest.approx(100 * cell["low"], abs=0.05)
            assert float(match["high"]) == pytest.approx(100 * cell["high"], abs=0.05)
            assert int(match["n"]) == cell["n"]
            checked += 1
    assert checked == len(results["criteria"]) * len(results["variants"])


def test_markdown_comparisons_match_the_json(results):
    rows = table_rows(markdown_section(render_markdown(results), "## Paired comparisons"))
    assert len(rows) == len(results["comparisons"])
    for row, comparison in zip(rows, results["comparisons"]):
        assert row[0] == f"{comparison['before']} → {comparison['after']}" and row[1] == comparison["criterion"]
        assert int(row[2]) == comparison["n"]
        assert float(row[5]) == pytest.approx(100 * comparison["lift"], abs=0.05)
        assert row[7] == f"{comparison['wins']} / {comparison['losses']}"
        assert float(row[9]) == pytest.approx(comparison["p_adjusted"], rel=1e-3)
        assert float(row[10]) == pytest.approx(comparison["cohens_h"], abs=5e-4)
        assert row[11] == ("yes" if comparison["significant"] else "no")
        detectable = comparison["detectable_lift"]
        if detectable is None:
            assert row[12] == "—"
        else:
            points, alpha = row[12].split(" (α ")
            assert float(points) == pytest.approx(100 * detectable, abs=0.05)
            assert float(alpha.rstrip(")")) == pytest.approx(comparison["detectable_lift_alpha"], rel=0.01)


def test_markdown_reports_skips_categories_and_flips(results):
    markdown = render_markdown(results)
    assert "- variant `dpo`: adapter not found: run/dpo/adapter" in markdown
    assert "- comparison sft → dpo: not evaluated: dpo" in markdown
    assert "### science (5 items)" in markdown  # 5 science items reach min_category_items=4
    assert f"### {POOLED_CATEGORY}" in markdown
    flips = markdown_section(markdown, "## Flipped items")
    assert "#### stopped_with_end: 5 wins, 0 losses" in flips
    win_rows = [row for row in table_rows(flips) if row[1] == "g09"]
    assert ["win", "g09", "Give me one tip for better sleep.", "*(empty)*",
            "Keep a regular bedtime and avoid screens for an hour before bed."] in win_rows
    assert "`Instruction: {instruction}\\nResponse: {response}\\nEND`" in markdown


def test_cell_text_keeps_tables_intact():
    assert cell_text("a | b\nc") == "a \\| b<br>c"
    assert cell_text("x" * 500, limit=10) == "x" * 9 + "…"


def test_written_reports(results, tmp_path):
    paths = write_reports(tmp_path, results)
    assert set(paths) == {"results", "report", "chart"}
    assert load_results(tmp_path / RESULTS_NAME) == json.loads(json.dumps(results))
    assert (tmp_path / REPORT_NAME).read_text(encoding="utf-8") == render_markdown(json.loads(json.dumps(results)))
    png = (tmp_path / CHART_NAME).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 600 and height >= 300
    from matplotlib.image import imread

    pixels = imread(tmp_path / CHART_NAME)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.05  # something was drawn


def test_rich_table_has_every_criterion_and_variant(results):
    from rich.console import Console

    table = rich_summary_table(results)
    assert [column.header for column in table.columns] == ["criterion", *results["variants"]]
    assert table.row_count == len(results["criteria"])
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert "stopped_with_end" in text and "100.0%" in text


def test_the_leakage_check_is_stated_in_words():
    checked = {"checked": True, "eval_items": 241, "leaks": 0, "training_rows": {"/run/sft_data/train.jsonl": 406, "/run/pairs/train.jsonl": 700}}
    assert leakage_text(checked) == (
        "passed: 0 of 241 items found in training data (pairs/train.jsonl: 700 rows, sft_data/train.jsonl: 406 rows)"
    )
    assert leakage_text({"checked": False, "reason": "no training files given"}) == "NOT CHECKED (no training files given)"
    assert leakage_text(None) == "not recorded"


def test_markdown_states_the_leakage_check(results):
    assert "| leakage check | " in render_markdown(results)


def test_markdown_shows_each_dpo_variants_log_prob_shift_and_warning(results):
    shift = {"count": 4, "mean_chosen": -1.25, "mean_rejected": -3.5, "chosen_fell_share": 0.75, "rejected_fell_share": 1.0}
    rewards = {"count": 4, "reward_accuracy": 0.5, "mean_margin": 0.225, "mean_chosen_reward": -0.125, "mean_rejected_reward": -0.35}
    fact = {"beta": 0.1, "reward_accuracy": 0.5, "reward_margin": 0.225,
            "logp_shift": {**shift, "by_kind": {"off_topic": shift}, "by_source": {"policy": shift}},
            "by_kind": {"off_topic": rewards}, "by_source": {"policy": rewards}, "max_chosen_logp_drop": 1.0,
            "warnings": ["the chosen answers' mean log-prob fell 1.250 nats below the reference"],
            "pairs": {"negative_sources": ["policy_negatives"], "selection_criteria": ["no_runaway", "not_degenerate"],
                      "train_by_source": {"policy": 12}}}
    assert "## DPO training" not in render_markdown(results)  # nothing to show without DPO manifests
    markdown = render_markdown({**results, "dpo_training": {"dpo": fact}})
    section = markdown_section(markdown, "## DPO training")
    rows = table_rows(section)
    assert rows[0] == ["`dpo`", "all", "4", "0.500", "+0.2250", "-1.250", "75%", "-3.500"]
    assert ["`dpo`", "source `policy`", "4", "0.500", "+0.2250", "-1.250", "75%", "-3.500"] in rows
    assert any(row[1] == "kind `off_topic`" for row in rows)
    assert "- `dpo` warning: the chosen answers' mean log-prob fell 1.250 nats below the reference" in section
    assert "`dpo` trained on 12 policy pairs; policy pairs chosen by no_runaway, not_degenerate." in section


def _fixture_responses() -> tuple[list, dict]:
    items = read_eval_items(GOLDEN_DIR / "items.jsonl")
    responses: dict[str, dict[str, EvalResponse]] = {}
    for response in read_records(GOLDEN_DIR / "responses.jsonl", EvalResponse):
        responses.setdefault(response.variant, {})[response.item_id] = response
    return items, responses


def test_benjamini_hochberg_runs_within_each_named_family():
    """A family's adjusted p-values are BH over its own cells alone, whatever the other family holds."""
    from stage1.core.stats import benjamini_hochberg

    items, responses = _fixture_responses()
    families = {"study": [("base", "sft")], "format_sensitivity": [("sft", "base")]}
    summary = summarise(items, responses, pairs=[("base", "sft"), ("sft", "base")], confidence=0.95, q=0.05,
                        bootstrap_samples=50, seed=0, min_category_items=4, families=families)
    assert summary["statistics"]["families"] == {"study": ["base->sft"], "format_sensitivity": ["sft->base"]}
    for family in families:
        cells = [c for c in summary["comparisons"] if c["family"] == family and c["mcnemar"] is not None]
        _, adjusted = benjamini_hochberg([c["mcnemar"]["p_value"] for c in cells], 0.05)
        assert [c["p_adjusted"] for c in cells] == adjusted
    pooled = summarise(items, responses, pairs=[("base", "sft"), ("sft", "base")], confidence=0.95, q=0.05,
                       bootstrap_samples=50, seed=0, min_category_items=4)
    assert {c["family"] for c in pooled["comparisons"]} == {"all"}
    markdown = render_markdown({**summary, "provenance": {}})
    assert "### Format-sensitivity check" in markdown and "### Family `study`" in markdown


def test_lengths_per_variant_are_in_the_json_and_the_report(results):
    """Mean/median words are recomputed from the responses; the report's table shows the same numbers."""
    import statistics

    for variant in results["variants"]:
        words = [len(row["outcomes"][variant]["response"].split()) for row in results["items"]]
        tokens = [row["outcomes"][variant]["num_tokens"] for row in results["items"]]
        cell = results["lengths"][variant]
        assert cell["words"] == {"mean": pytest.approx(statistics.fmean(words)), "median": statistics.median(words)}
        assert cell["tokens"]["median"] == statistics.median(tokens)
    rows = table_rows(markdown_section(render_markdown(results), "## Response length"))
    by_variant = {row[0]: row for row in rows if row[0] in results["lengths"]}
    for variant, cell in results["lengths"].items():
        assert float(by_variant[variant][2]) == pytest.approx(cell["words"]["mean"], abs=0.05)
        assert float(by_variant[variant][5]) == pytest.approx(cell["tokens"]["median"], abs=0.05)


def test_the_report_says_what_each_comparison_can_detect(results):
    """One line per compared pair naming its n and the smallest and largest detectable lift in points."""
    markdown = render_markdown(results)
    cells = [c for c in results["comparisons"] if (c["before"], c["after"]) == ("base", "sft") and c["n"]]
    known = [c for c in cells if c["detectable_lift"] is not None]
    if known:
        low = min(known, key=lambda c: c["detectable_lift"])
        expected = (f"base → sft: with {low['n']} items, lifts under {100 * low['detectable_lift']:.1f} points are below what "
                    f"this evaluation can detect ({low['criterion']}")
    else:
        expected = "base → sft: no lift is detectable; too few discordant items to detect any lift on "
    assert expected in markdown


def test_the_detectable_lift_is_computed_at_the_threshold_bh_applies_in_the_family():
    """A family of 2 pairs x 8 criteria; one cell clearly rejected: it and every other cell carry
    (k + 1)·q/m with k the other rejections, and the detectable lift at that level."""
    from stage1.core.criteria import CRITERION_NAMES
    from stage1.core.stats import mcnemar_detectable_lift
    from stage1.eval.summary import compare_variants

    first = CRITERION_NAMES[0]
    verdicts: dict = {"a": {}, "b": {}, "c": {}}
    for k in range(300):
        verdicts["a"][f"i{k}"] = dict.fromkeys(CRITERION_NAMES, k % 2 == 0)
        verdicts["b"][f"i{k}"] = {**dict.fromkeys(CRITERION_NAMES, k % 2 == 0), first: k % 2 == 0 or k < 120}
        verdicts["c"][f"i{k}"] = dict.fromkeys(CRITERION_NAMES, k % 2 == 0 or k % 7 == 1)
    cells, _ = compare_variants(verdicts, [("a", "b"), ("a", "c")], q=0.05, bootstrap_samples=10, seed=0, confidence=0.95)
    testable = [c for c in cells if c["mcnemar"] is not None]
    rejected = sum(c["significant"] for c in testable)
    assert rejected >= 1 and len(testable) == 2 * len(CRITERION_NAMES)
    for cell in testable:
        others = rejected - int(cell["significant"])
        assert cell["detectable_lift_alpha"] == pytest.approx((others + 1) * 0.05 / len(testable))
        expected = mcnemar_detectable_lift(cell["n"], cell["n01"] + cell["n10"], alpha=cell["detectable_lift_alpha"])
        assert cell["detectable_lift"] == expected
        if expected is not None:
            assert expected > mcnemar_detectable_lift(cell["n"], cell["n01"] + cell["n10"], alpha=0.05)


def test_the_length_control_keeps_every_item_and_shrinks_a_lift_that_came_with_longer_answers():
    """40 items: 30 wins each with a three times longer answer, 10 ties at equal length. The
    controlled lift is computed on every discordant item (none dropped for its length) and is
    smaller than the raw lift; with equal lengths it matches the raw direction."""
    from stage1.eval.summary import compare_cell

    before = {f"i{k}": k >= 30 and k < 35 for k in range(40)}
    after = {f"i{k}": k < 30 or k >= 35 for k in range(40)}
    longer = {f"i{k}": k < 30 for k in range(40)}
    cell = compare_cell(before, after, bootstrap_samples=20, seed=0, confidence=0.95, ratio=lambda i: 1.1 if longer[i] else 0.0)
    controlled = cell["length_controlled"]
    assert controlled["discordant"] == cell["wins"] + cell["losses"] == 40
    assert controlled["lift"] < cell["lift"] and controlled["length_slope"] > 0
    equal = compare_cell(before, after, bootstrap_samples=20, seed=0, confidence=0.95, ratio=lambda i: 0.0)["length_controlled"]
    assert equal["lift"] > 0 and equal["lift"] == pytest.approx(cell["lift"], abs=0.1)


def test_a_trivially_significant_side_check_does_not_loosen_the_study_threshold():
    """base -> sft wins 15 and loses 4 on one criterion (McNemar p = 0.019) and ties on the other
    n - 1 (n criteria, 8 today). Alone in its family BH adjusts it to n × 0.019 = 0.15: not
    significant. Pooled with base_raw -> base's n p-values near zero, it ranks n+1th of 2n and adjusts
    to 2n/(n+1) × 0.019 = 0.034: the padding alone would have made it significant."""
    from stage1.core.criteria import CRITERION_NAMES
    from stage1.eval.summary import compare_variants

    first = CRITERION_NAMES[0]
    verdicts: dict = {"base_raw": {}, "base": {}, "sft": {}}
    for k in range(200):
        base = k < 60
        verdicts["base_raw"][f"i{k}"] = dict.fromkeys(CRITERION_NAMES, False)
        verdicts["base"][f"i{k}"] = dict.fromkeys(CRITERION_NAMES, base)
        verdicts["sft"][f"i{k}"] = {**dict.fromkeys(CRITERION_NAMES, base), first: (base and k >= 4) or 60 <= k < 75}
    pairs = [("base_raw", "base"), ("base", "sft")]
    kwargs = {"q": 0.05, "bootstrap_samples": 10, "seed": 0, "confidence": 0.95}
    pooled, _ = compare_variants(verdicts, pairs, **kwargs)
    named, _ = compare_variants(verdicts, pairs, families={"study": [("base", "sft")], "format_sensitivity": [("base_raw", "base")]}, **kwargs)

    def cell(cells):
        return next(c for c in cells if c["before"] == "base" and c["criterion"] == first)

    assert cell(named)["mcnemar"]["p_value"] == pytest.approx(0.0192, abs=1e-4)
    n = len(CRITERION_NAMES)
    assert cell(pooled)["significant"] and cell(pooled)["p_adjusted"] == pytest.approx(0.0192 * 2 * n / (n + 1), abs=1e-3)
    assert not cell(named)["significant"] and cell(named)["p_adjusted"] == pytest.approx(0.0192 * n, abs=1e-3)
    assert cell(named)["family"] == "study" and all(c["significant"] for c in named if c["family"] == "format_sensitivity")


def test_pair_lengths_are_read_from_the_training_pairs_and_reported(tmp_path, results):
    """Only rows of a pairs file count; an SFT file among the training files adds nothing."""
    from stage1.eval.stage import training_pair_lengths

    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "Instruction: Q?\nResponse:", "chosen": " A b.\nEND", "rejected": f" {'w ' * k}x.\nEND",
             "instruction_id": "q", "category": "c", "negative_kind": "verbose_vague", "split": "train"} for k in (2, 5, 9)]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"id": "q", "instruction": "Q?", "response": "A b.", "category": "c"}) + "\n")
    lengths = training_pair_lengths([sft, pairs])
    shortcuts = lengths["verbose_vague"].pop("shortcuts")
    assert lengths == {"verbose_vague": {"pairs": 3, "rejected_longer": 1.0, "equal": 0.0, "longer_score": 1.0,
                                         "median_chosen_words": 2.0, "median_rejected_words": 6.0}}
    assert shortcuts["length_rule"] == 1.0 and shortcuts["classifier"] is None  # one instruction: nothing to cross-validate
    lengths["verbose_vague"]["shortcuts"] = {**shortcuts, "classifier": 0.75}
    section = markdown_section(render_markdown({**results, "pair_lengths": lengths}), "## Preference pairs: length by negative kind")
    assert table_rows(section) == [["verbose_vague", "3", "100%", "0%", "2.0", "6.0", "100%", "75%"]]


# ---------------------------------------------------------------- the summary and the chart


def test_the_report_opens_with_a_summary_of_what_improved_got_worse_and_cannot_be_detected(results):
    markdown = render_markdown(results)
    lines = markdown.split("\n")
    assert lines[2] == "## Summary" and lines.index("## Summary") < lines.index("## Setup")
    summary = markdown_section(markdown, "## Summary")
    text = "\n".join(summary)
    improved = summary[summary.index("- **Improved:**") + 1: summary.index("- **Got worse:**")]
    worse = summary[summary.index("- **Got worse:**") + 1: summary.index("- **Cannot detect:**")]
    up = [c for c in results["comparisons"] if c["significant"] and c["lift"] > 0]
    down = [c for c in results["comparisons"] if c["significant"] and c["lift"] < 0]
    assert len([line for line in improved if line.startswith("  - ") and "nothing" not in line]) == min(len(up), 8)
    for c in up[:8]:
        assert any(f"{c['before']} → {c['after']}: {c['criterion']} +{100 * c['lift']:.1f} pts" in line for line in improved)
    assert worse == ["  - nothing significant"] if not down else len(worse) >= 1
    assert "base → sft:" in text and "one seed" in text and "not its quality" in text
    assert "- **Model:** not recorded" in text  # this fixture's responses were scored without the models


def test_the_summary_says_which_model_it_ran_on_and_that_a_tiny_one_proves_nothing(results):
    from stage1.eval.report_summary import describe_model, summary_section

    tiny = {"model_type": "qwen2", "num_hidden_layers": 2, "hidden_size": 64, "weights_bytes": 2_400_000}
    text = describe_model(tiny, "runs/tiny/model")
    assert text.startswith("`runs/tiny/model`: qwen2, 2 layers, hidden size 64, 2.4 MB of weights") and "test model" in text
    real = {"model_type": "qwen2", "num_hidden_layers": 64, "hidden_size": 5120, "name_or_path": "Qwen/Qwen2.5-32B"}
    assert "test model" not in describe_model(real, "/models/qwen32b") and "from Qwen/Qwen2.5-32B" in describe_model(real, "/m")
    described = {**results, "provenance": {**results["provenance"], "variants": {"base": {"model_dir": "m", "model": tiny}}}}
    assert any("`m`: qwen2, 2 layers" in line for line in summary_section(described))


def test_chart_labels_give_n_and_stay_short():
    from stage1.eval.report import LABEL_WIDTH, chart_label

    label = chart_label("no_unwarranted_refusal", 241)
    assert label.split("\n")[-1] == "n=241" and all(len(line) <= LABEL_WIDTH for line in label.split("\n")[:-1])
    assert chart_label("on_topic", 5) == "on topic\nn=5"


def test_a_zero_rate_is_drawn_and_marked(results, monkeypatch):
    """A variant at 0% on a criterion gets a visible hatched bar and a "0%" mark, not an empty slot."""
    import copy

    from matplotlib.axes import Axes

    from stage1.eval.report import ZERO_BAR, render_chart_png

    zeroed = copy.deepcopy(results)
    name = zeroed["criteria"][0]
    zeroed["rates"]["base"][name] = {**zeroed["rates"]["base"][name], "successes": 0, "rate": 0.0, "low": 0.0, "high": 0.2}
    bars, texts = [], []
    original_bar, original_text = Axes.bar, Axes.text
    monkeypatch.setattr(Axes, "bar", lambda self, x, height, *a, **k: bars.append((list(height), k.get("hatch"))) or original_bar(self, x, height, *a, **k))
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, *a, **k: texts.append(s) or original_text(self, x, y, s, *a, **k))
    assert render_chart_png(zeroed)[:4] == b"\x89PNG"
    assert ([ZERO_BAR], "///") in bars and "0%" in texts


def test_the_summary_at_80_columns_splits_the_variants_and_cuts_nothing(results):
    from rich.console import Console

    from stage1.eval.report import RichSummary

    wide = dict(results, variants=[f"checkpoint_{index}" for index in range(5)])
    wide["rates"] = {name: results["rates"][results["variants"][0]] for name in wide["variants"]}
    console = Console(record=True, width=80)
    console.print(RichSummary(wide))
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    assert all(name in text for name in wide["variants"]) and text.count("evaluation: rate") >= 2
    console = Console(record=True, width=250)
    console.print(RichSummary(wide))
    assert console.export_text().count("evaluation: rate") == 1, "one table where it fits"


def test_results_json_is_the_results_with_one_item_per_line(results):
    import json

    from stage1.eval.report import results_json
    from stage1.io.atomic import dumps_json

    text = results_json(results)
    assert json.loads(text) == json.loads(dumps_json(results)) and text.endswith("\n")
    item_lines = [line for line in text.splitlines() if line.startswith('    {"category"')]
    assert len(item_lines) == len(results["items"]) > 0
    assert results_json(results) == text, "the same results, the same bytes"
    assert results_json({**results, "items": []}) == dumps_json({**results, "items": []})


def test_a_sweep_of_many_variants_is_one_line_per_criterion_on_a_canvas_of_fixed_size(results):
    """Up to MAX_BAR_VARIANTS variants the bar chart widens with them; past it every sweep gets the
    same canvas (a line per criterion through the variants), so its memory does not grow with them."""
    import struct

    from stage1.eval.report import MAX_BAR_VARIANTS, render_chart_png

    def size(variants: int) -> tuple[int, int]:
        names = [f"ckpt{k:03d}" for k in range(variants)]
        sweep = {**results, "variants": names, "rates": {name: results["rates"]["base"] for name in names}}
        png = render_chart_png(sweep)
        assert png[:4] == b"\x89PNG"
        return struct.unpack(">II", png[16:24])

    assert size(MAX_BAR_VARIANTS)[0] > size(MAX_BAR_VARIANTS // 2)[0]
    assert size(MAX_BAR_VARIANTS + 1) == size(97) == size(400)
    assert size(97)[0] < size(MAX_BAR_VARIANTS)[0] * 2
