"""Evaluations of several seeds read together: rates and lifts as mean and spread, with an interval
over items and seeds; runs on other items are refused."""

from __future__ import annotations

import json
import random

import pytest

from stage1.eval.seeds import _adjust, main, seed_markdown, seed_summary

CRITERIA = ["stopped_with_end", "on_topic"]


def _results(rng: random.Random, shift: float, items: int = 60) -> dict:
    """A results dict of two variants; ``after`` passes stopped_with_end more often by ``shift``."""
    rows, counts = [], {"base": [0, 0], "sft": [0, 0]}
    for index in range(items):
        ease = 0.3 + 0.4 * (index % 5) / 4
        base = {"stopped_with_end": rng.random() < ease, "on_topic": None if index % 4 == 0 else rng.random() < 0.5}
        sft = {"stopped_with_end": rng.random() < min(1.0, ease + shift), "on_topic": None if index % 4 == 0 else rng.random() < 0.5}
        rows.append({"id": f"i{index}", "outcomes": {"base": {"criteria": base}, "sft": {"criteria": sft}}})
        counts["base"][0] += base["stopped_with_end"]
        counts["sft"][0] += sft["stopped_with_end"]
    rates = {v: {"stopped_with_end": {"rate": counts[v][0] / items},
                 "on_topic": {"rate": sum(bool(r["outcomes"][v]["criteria"]["on_topic"]) for r in rows) / (items - items // 4)}}
             for v in ("base", "sft")}
    return {"criteria": CRITERIA, "variants": ["base", "sft"], "items": rows, "rates": rates,
            "comparisons": [{"before": "base", "after": "sft", "criterion": c} for c in CRITERIA]}


def test_rates_and_lifts_are_given_per_seed_with_mean_spread_and_interval():
    rng = random.Random(3)
    runs = [_results(rng, shift) for shift in (0.3, 0.1, 0.2)]
    summary = seed_summary(runs)
    assert summary["seeds"] == 3 and summary["num_items"] == 60
    rate = summary["rates"]["sft"]["stopped_with_end"]
    assert rate["per_seed"] == [run["rates"]["sft"]["stopped_with_end"]["rate"] for run in runs]
    assert rate["mean"] == pytest.approx(sum(rate["per_seed"]) / 3)
    lift = next(c for c in summary["comparisons"] if c["criterion"] == "stopped_with_end")
    assert lift["n"] == 60 and len(lift["per_seed"]) == 3 and lift["low"] < lift["lift"] < lift["high"]
    assert lift["per_seed"][0] == pytest.approx(
        sum(r["outcomes"]["sft"]["criteria"]["stopped_with_end"] - r["outcomes"]["base"]["criteria"]["stopped_with_end"]
            for r in runs[0]["items"]) / 60)
    topic = next(c for c in summary["comparisons"] if c["criterion"] == "on_topic")
    assert topic["n"] == 45, "n/a items are left out, as in one run"
    markdown = seed_markdown(summary, ["a", "b", "c"])
    assert "| base → sft | stopped_with_end | 60 |" in markdown and "± " in markdown


def test_runs_on_other_items_or_a_single_run_are_refused(tmp_path, capsys):
    rng = random.Random(4)
    one, other = _results(rng, 0.1), _results(rng, 0.1, items=50)
    with pytest.raises(ValueError, match="other items"):
        seed_summary([one, other])
    with pytest.raises(ValueError, match="at least 2"):
        seed_summary([one])
    for name, run in (("a.json", one), ("b.json", other)):
        (tmp_path / name).write_text(json.dumps(run), encoding="utf-8")
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "out")]) == 2
    assert "other items" in capsys.readouterr().err and not (tmp_path / "out" / "seeds.md").exists()


def test_main_writes_seeds_json_and_markdown(tmp_path):
    rng = random.Random(5)
    paths = []
    for index, shift in enumerate((0.2, 0.25)):
        path = tmp_path / f"run{index}.json"
        path.write_text(json.dumps(_results(rng, shift)), encoding="utf-8")
        paths.append(str(path))
    assert main([*paths, "--out", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "seeds.json").read_text(encoding="utf-8"))
    assert written["seeds"] == 2 and (tmp_path / "out" / "seeds.md").read_text(encoding="utf-8").startswith("# Evaluation across seeds")


def test_each_lift_is_tested_and_adjusted_within_its_family_at_the_runs_q():
    """p-values from the seed-and-item test, Benjamini–Hochberg within each family (as one run's
    report does), at the q the runs were evaluated with; a family of one cell is not adjusted."""
    rng = random.Random(6)
    runs = [_results(rng, shift) for shift in (0.35, 0.3, 0.4)]
    for run in runs:
        run["statistics"] = {"q": 0.1}
        run["comparisons"] = [{"before": "base", "after": "sft", "criterion": c, "family": "study"} for c in CRITERIA]
    summary = seed_summary(runs, seeds=[0, 1, 2])
    assert summary["q"] == 0.1 and summary["seed_values"] == [0, 1, 2]
    cells = {c["criterion"]: c for c in summary["comparisons"]}
    ranked = sorted(cells.values(), key=lambda c: c["p_value"])
    assert ranked[0]["p_adjusted"] == pytest.approx(min(1.0, 2 * ranked[0]["p_value"], ranked[1]["p_value"]))
    assert ranked[1]["p_adjusted"] == pytest.approx(ranked[1]["p_value"])
    for cell in cells.values():
        assert cell["significant"] == (cell["p_adjusted"] <= 0.1) and cell["family"] == "study"
    assert cells["stopped_with_end"]["significant"], "a 35-point lift on every seed is found"
    cells = [{"family": family, "p_value": p} for family, p in (("a", 0.01), ("a", 0.04), ("b", 0.03))]
    _adjust(cells, 0.05)
    assert [c["p_adjusted"] for c in cells] == pytest.approx([0.02, 0.04, 0.03]), "family b is its own"
    with pytest.raises(ValueError, match="2 seeds named for 3 runs"):
        seed_summary(runs, seeds=[0, 1])


def test_an_item_is_counted_only_where_the_criterion_applies_in_every_seed():
    rng = random.Random(7)
    runs = [_results(rng, 0.1) for _ in range(2)]
    runs[1]["items"][1]["outcomes"]["sft"]["criteria"]["stopped_with_end"] = None
    cell = next(c for c in seed_summary(runs)["comparisons"] if c["criterion"] == "stopped_with_end")
    assert cell["n"] == 59
