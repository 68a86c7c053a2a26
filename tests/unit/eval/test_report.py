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
