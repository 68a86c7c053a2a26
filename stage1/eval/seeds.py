"""Rates and lifts across training seeds: one evaluation per seed, read together.

    python -m stage1.eval.seeds --out DIR RUN_A RUN_B RUN_C   # each RUN: a run folder (or a results.json)

Each run is the whole pipeline with another ``run.seed`` (``python cli.py run --run-dir RUN_A
--set run.seed=1``, ...), evaluated on the same items. This reads their ``eval/results.json`` and
writes ``DIR/seeds.json`` and ``DIR/seeds.md``: per variant and criterion the rate of each seed,
their mean and spread (sample sd); per comparison and criterion the lift of each seed, the mean,
the spread and an interval that accounts for both the items and the seeds
(``stage1.core.seed_stats.seed_lift``). A single run's McNemar test sees item noise only: a lift
that one seed shows and the next does not is training noise.

Inside one run, ``training.seeds`` does the same without separate runs: the ``seeds`` stage
(``run_seed_report``) reads the evaluation of every training seed of the run and writes
``<run>/seeds/seeds.json`` and ``seeds.md``.

The aggregation (``seed_summary``, ``seed_markdown``) is pure; ``main`` and ``run_seed_report`` read
and write.
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
from stage1.core.stats import benjamini_hochberg
from stage1.eval.report import load_results
from stage1.eval.summary import DEFAULT_FAMILY  # also the family of a comparison written before families existed
from stage1.io.atomic import atomic_write_json, atomic_write_text
from stage1.io.layout import RESULTS_FILE, SEEDS_JSON, SEEDS_MD
from stage1.io.manifest import build_manifest, write_manifest

STAGE = "seeds"
SEEDS_SCHEMA = "stage1.eval.seeds/2"
DEFAULT_Q = 0.05  # the false discovery rate when the runs' results do not say theirs


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


def _lift_cells(results: Sequence[dict[str, Any]], confidence: float) -> list[dict[str, Any]]:
    """One cell per configured comparison and criterion: the lift over seeds and items on the items
    where the criterion applies to both variants in every seed."""
    criteria, verdicts = results[0]["criteria"], [_verdicts(r) for r in results]
    families = {(c["before"], c["after"]): c.get("family", DEFAULT_FAMILY) for c in results[0]["comparisons"]}
    cells = []
    for (before_name, after_name), family in families.items():
        for criterion in criteria:
            ids = [i for i in verdicts[0] if all(v[i][name][criterion] is not None for v in verdicts for name in (before_name, after_name))]
            if len(ids) < 2:
                continue
            before = [[bool(v[i][before_name][criterion]) for i in ids] for v in verdicts]
            after = [[bool(v[i][after_name][criterion]) for i in ids] for v in verdicts]
            lift = seed_lift(before, after, confidence)
            cells.append({"before": before_name, "after": after_name, "criterion": criterion, "family": family, "n": len(ids),
                          "lift": lift.lift, "per_seed": list(lift.per_seed), "spread": lift.spread, "low": lift.low,
                          "high": lift.high, "excludes_zero": lift.low > 0 or lift.high < 0, "df": lift.df, "p_value": lift.p_value})
    return cells


def _adjust(cells: list[dict[str, Any]], q: float) -> None:
    """Benjamini–Hochberg over each family's cells, as one run's report does with McNemar's p-values."""
    for family in dict.fromkeys(cell["family"] for cell in cells):
        members = [cell for cell in cells if cell["family"] == family]
        rejected, adjusted = benjamini_hochberg([cell["p_value"] for cell in members], q)
        for cell, significant, value in zip(members, rejected, adjusted):
            cell["p_adjusted"], cell["significant"] = value, significant


def seed_summary(results: Sequence[dict[str, Any]], confidence: float = 0.95, seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Rates and lifts of several runs' ``results.json`` (one per seed), read together.

    Each lift gets the interval and p-value of ``seed_lift`` (items and seeds), adjusted by
    Benjamini–Hochberg within the comparison's family at the runs' own ``q`` (``statistics.q``).

    Args:
        seeds: the training seed of each run, for the report (None: not known).

    Raises:
        ValueError: fewer than 2 runs, runs on other items, variants or criteria, or ``seeds`` of
            another length than ``results``.
    """
    if len(results) < 2:
        raise ValueError(f"need at least 2 runs (one per seed), got {len(results)}")
    if seeds is not None and len(seeds) != len(results):
        raise ValueError(f"{len(seeds)} seeds named for {len(results)} runs")
    _check_same(results)
    criteria, variants = results[0]["criteria"], results[0]["variants"]
    rates = {v: {c: _mean_spread([r["rates"][v][c]["rate"] for r in results]) for c in criteria
                 if all(r["rates"][v][c]["rate"] is not None for r in results)} for v in variants}
    q = results[0].get("statistics", {}).get("q", DEFAULT_Q)
    comparisons = _lift_cells(results, confidence)
    _adjust(comparisons, q)
    return {"schema": SEEDS_SCHEMA, "seeds": len(results), "seed_values": None if seeds is None else list(seeds),
            "confidence": confidence, "q": q, "criteria": criteria, "variants": variants,
            "num_items": len(results[0]["items"]), "rates": rates, "comparisons": comparisons}


def _pts(value: float) -> str:
    return f"{100 * value:+.1f}"


def seed_markdown(summary: dict[str, Any], sources: Sequence[str]) -> str:
    """``seeds.md``: the rates and lifts as mean ± spread over seeds, with each seed's value, the
    interval over items and seeds, and the test of no lift after Benjamini–Hochberg."""
    level = f"{summary['confidence']:.0%}"
    named = summary.get("seed_values")
    which = f"seeds {', '.join(map(str, named))}" if named else "one per seed"
    lines = ["# Evaluation across seeds", "", f"{summary['seeds']} trainings ({which}) on the same {summary['num_items']} items: "
             + ", ".join(f"`{source}`" for source in sources) + ".", "", "## Rates (mean ± spread over seeds)", ""]
    header = ["criterion", *summary["variants"]]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for criterion in summary["criteria"]:
        cells = [summary["rates"][v].get(criterion) for v in summary["variants"]]
        lines.append("| " + " | ".join([criterion] + ["—" if c is None else f"{100 * c['mean']:.1f}% ± {100 * c['spread']:.1f}"
                                                       for c in cells]) + " |")
    lines += ["", "## Lifts (points)", "",
              f"Mean over seeds ± spread (sample sd of the seeds' lifts); the {level} interval and the p-value account for the "
              "items and the seeds drawn (crossed design, t with Satterthwaite's degrees of freedom, `df`), so a lift one seed "
              "shows and another does not stays inside it. `p adj.`: Benjamini–Hochberg within each family at "
              f"q = {summary.get('q', DEFAULT_Q)}; significant when `p adj.` <= q.", "",
              f"| before → after | criterion | n | lift ± spread | each seed | {level} interval | df | p | p adj. | significant |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in summary["comparisons"]:
        lines.append(f"| {c['before']} → {c['after']} | {c['criterion']} | {c['n']} | {_pts(c['lift'])} ± {100 * c['spread']:.1f} | "
                     f"{', '.join(_pts(v) for v in c['per_seed'])} | [{_pts(c['low'])}, {_pts(c['high'])}] | {c['df']} | "
                     f"{c['p_value']:.3g} | {c['p_adjusted']:.3g} | {'yes' if c['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


def run_seed_report(results: dict[int, Path], out_dir: Path, confidence: float = 0.95) -> dict[str, Any]:
    """The ``seeds`` stage: every training seed's ``results.json`` of one run, read together into
    ``seeds.json`` and ``seeds.md`` in ``out_dir``, then the manifest.

    Args:
        results: training seed -> that seed's ``results.json``, in the order of ``training.seeds``.

    Raises:
        InputError: a results file is missing or unreadable.
        ValueError: the seeds were evaluated on other items, variants or criteria.
    """
    out_dir = Path(out_dir)
    summary = seed_summary([load_results(path) for path in results.values()], confidence, seeds=list(results))
    outputs = {"seeds_json": atomic_write_json(out_dir / SEEDS_JSON, summary),
               "seeds_md": atomic_write_text(out_dir / SEEDS_MD, seed_markdown(summary, [str(p) for p in results.values()]))}
    counts = {"seeds": summary["seeds"], "items": summary["num_items"], "comparisons": len(summary["comparisons"]),
              "significant": sum(c["significant"] for c in summary["comparisons"])}
    manifest = build_manifest(STAGE, config={"seeds": list(results), "confidence": confidence}, seed=None,
                              inputs={f"results_seed_{seed}": path for seed, path in results.items()}, outputs=outputs, counts=counts)
    write_manifest(out_dir, manifest)  # last: its presence says the stage finished
    return manifest


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
