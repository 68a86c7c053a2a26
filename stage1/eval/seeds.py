"""Rates and lifts across training seeds: one evaluation per seed, read together.

    python -m stage1.eval.seeds --out DIR RUN_A RUN_B RUN_C   # each RUN: a run folder (or a results.json)

Each run is the whole pipeline with another ``run.seed`` (``python cli.py run --run-dir RUN_A
--set run.seed=1``, ...), evaluated on the same items. This reads their ``eval/results.json`` and
writes ``DIR/seeds.json`` and ``DIR/seeds.md``: per variant and criterion the rate of each seed,
their mean and spread (sample sd); per comparison and criterion the lift of each seed, the mean,
the spread and an interval that accounts for both the items and the seeds
(``stage1.core.seed_stats.seed_lift``). A single run's McNemar test sees item noise only: a lift
that one seed shows and the next does not is training noise.

The aggregation (``seed_summary``, ``seed_markdown``) is pure; ``main`` reads and writes.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stage1.core.errors import InputError
from stage1.core.seed_stats import seed_lift
from stage1.eval.report import load_results
from stage1.io.atomic import atomic_write_json, atomic_write_text
from stage1.io.layout import RESULTS_FILE

SEEDS_SCHEMA = "stage1.eval.seeds/1"


def _verdicts(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    return {row["id"]: {variant: outcome["criteria"] for variant, outcome in row["outcomes"].items()} for row in results["items"]}


def _check_same(results: Sequence[dict[str, Any]]) -> None:
    first = results[0]
    for index, other in enumerate(results[1:], start=2):
        for key in ("criteria", "variants"):
            if other[key] != first[key]:
                raise ValueError(f"run {index} has other {key} than run 1: {other[key]} != {first[key]}")
        if [row["id"] for row in other["items"]] != [row["id"] for row in first["items"]]:
            raise ValueError(f"run {index} was evaluated on other items than run 1")


def _mean_spread(values: Sequence[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"per_seed": list(values), "mean": mean, "spread": spread}


def seed_summary(results: Sequence[dict[str, Any]], confidence: float = 0.95) -> dict[str, Any]:
    """Rates and lifts of several runs' ``results.json`` (one per seed), read together.

    Raises:
        ValueError: fewer than 2 runs, or runs on other items, variants or criteria.
    """
    if len(results) < 2:
        raise ValueError(f"need at least 2 runs (one per seed), got {len(results)}")
    _check_same(results)
    criteria, variants = results[0]["criteria"], results[0]["variants"]
    rates = {v: {c: _mean_spread([r["rates"][v][c]["rate"] for r in results]) for c in criteria
                 if all(r["rates"][v][c]["rate"] is not None for r in results)} for v in variants}
    verdicts = [_verdicts(r) for r in results]
    comparisons = []
    for pair in dict.fromkeys((c["before"], c["after"]) for c in results[0]["comparisons"]):
        for criterion in criteria:
            ids = [i for i, by_variant in verdicts[0].items() if by_variant[pair[0]][criterion] is not None]
            if len(ids) < 2:
                continue
            before = [[bool(v[i][pair[0]][criterion]) for i in ids] for v in verdicts]
            after = [[bool(v[i][pair[1]][criterion]) for i in ids] for v in verdicts]
            lift = seed_lift(before, after, confidence)
            comparisons.append({"before": pair[0], "after": pair[1], "criterion": criterion, "n": len(ids), "lift": lift.lift,
                                "per_seed": list(lift.per_seed), "spread": lift.spread, "low": lift.low, "high": lift.high,
                                "excludes_zero": lift.low > 0 or lift.high < 0})
    return {"schema": SEEDS_SCHEMA, "seeds": len(results), "confidence": confidence, "criteria": criteria, "variants": variants,
            "num_items": len(verdicts[0]), "rates": rates, "comparisons": comparisons}


def _pts(value: float) -> str:
    return f"{100 * value:+.1f}"


def seed_markdown(summary: dict[str, Any], sources: Sequence[str]) -> str:
    """``seeds.md``: the rates and lifts as mean ± spread over seeds, with each seed's value."""
    level = f"{summary['confidence']:.0%}"
    lines = ["# Evaluation across seeds", "", f"{summary['seeds']} runs, one per seed, on the same {summary['num_items']} items: "
             + ", ".join(f"`{source}`" for source in sources) + ".", "", "## Rates (mean ± spread over seeds)", ""]
    header = ["criterion", *summary["variants"]]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for criterion in summary["criteria"]:
        cells = [summary["rates"][v].get(criterion) for v in summary["variants"]]
        lines.append("| " + " | ".join([criterion] + ["—" if c is None else f"{100 * c['mean']:.1f}% ± {100 * c['spread']:.1f}"
                                                       for c in cells]) + " |")
    lines += ["", "## Lifts (points)", "",
              f"Mean over seeds ± spread (sample sd of the seeds' lifts); the {level} interval accounts for the items and the "
              "seeds drawn (crossed design, t with seeds − 1 degrees of freedom), so a lift one seed shows and another does "
              "not stays inside it.", "",
              f"| before → after | criterion | n | lift ± spread | each seed | {level} interval | excludes 0 |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in summary["comparisons"]:
        lines.append(f"| {c['before']} → {c['after']} | {c['criterion']} | {c['n']} | {_pts(c['lift'])} ± {100 * c['spread']:.1f} | "
                     f"{', '.join(_pts(v) for v in c['per_seed'])} | [{_pts(c['low'])}, {_pts(c['high'])}] | "
                     f"{'yes' if c['excludes_zero'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (their eval/results.json) or results.json files, one per seed")
    parser.add_argument("--out", type=Path, required=True, help="folder for seeds.json and seeds.md")
    args = parser.parse_args(argv)
    paths = [run if run.suffix == ".json" else run / "eval" / RESULTS_FILE for run in args.runs]
    try:
        summary = seed_summary([load_results(path) for path in paths])
    except (InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    atomic_write_json(args.out / "seeds.json", summary)
    atomic_write_text(args.out / "seeds.md", seed_markdown(summary, [str(path) for path in paths]))
    print(f"{args.out / 'seeds.md'}: {summary['seeds']} seeds, {len(summary['comparisons'])} comparisons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
