"""Scoring generations made anywhere: ``stage1 score --in items=... --in responses=... --out DIR``.

Another framework, a vLLM server or an earlier run wrote the responses; this module scores them
with the same criteria and statistics as ``stage1 evaluate`` and writes the same
``results.json``, ``report.md`` and ``chart.png`` (and a manifest). A responses file is JSONL, one
row per (item, variant)::

    {"item_id": str, "variant": str, "response": str, "stop_reason": "end"|"eos"|"runaway"|"max_tokens", "num_tokens": int}

``stop_reason`` and ``num_tokens`` are optional. ``response`` is the text the model wrote after
the prompt, read like a generation here (``format.parse_completion``): an ``END`` line ends the
answer and a line starting ``Instruction:`` is a runaway. Without ``stop_reason`` the text alone
decides it (an ``END`` line: ``end``; a runaway: ``runaway``; otherwise ``eos``, the generator
stopped by itself); a given ``stop_reason`` is taken as it is (a server that stopped on ``END`` and
dropped it says ``end``). Without ``num_tokens`` token lengths are reported as unknown rather than
guessed by another tokenizer.

Comparisons: the configured ones (``eval.comparisons``, with their families) whose two variants
are both present; when none is and there are two or more variants, each later variant against the
first one in the file, as one family.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.eval_items import stratified_sample
from stage1.eval.report import write_reports
from stage1.eval.report_flips import shown_outcomes
from stage1.eval.score_stream import read_scored
from stage1.eval.settings import EvalSettings
from stage1.eval.stage import PROMPT_FORMAT
from stage1.eval.summary import summarise_columns
from stage1.io.hashing import sha256_file
from stage1.io.manifest import build_manifest, write_manifest
from stage1.io.out_paths import check_out_dir
from stage1.io.records import read_eval_items
from stage1.io.run_lock import lock_for_output

STAGE = "score"


def comparison_plan(settings: EvalSettings, variants: Sequence[str]) -> tuple[list[tuple[str, str]], dict[str, tuple[tuple[str, str], ...]] | None]:
    """The pairs to compare and their families (see the module docstring)."""
    present = set(variants)
    configured = [pair for pair in settings.comparison_pairs if set(pair) <= present]
    if configured:
        return configured, settings.family_pairs
    return [(variants[0], other) for other in variants[1:]], None


def run_score(settings: EvalSettings, *, items_path: str | Path, responses_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Score the responses file against the items into ``out_dir``, as a careful writer: the output
    folder is checked before anything is read or created (not ``/``, not a file or under one, not the
    folder of an input: ``results.json`` must never replace ``responses.jsonl``), and written under
    the lock of the run it lies in, so ``score`` never writes into a run another command holds.

    Raises:
        ConfigError: the output folder is refused (see ``check_out_dir``).
        RunLockedError: ``out_dir`` lies in a run directory another process holds.
        InputError: a bad items or responses file (file, line, field).
    """

    out = Path(out_dir)
    check_out_dir(out, (Path(items_path), Path(responses_path)))
    with lock_for_output(out):
        return _score_into(settings, items_path=items_path, responses_path=responses_path, out_dir=out)


def _score_into(settings: EvalSettings, *, items_path: str | Path, responses_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Score the responses file against the items and write the reports and a manifest; returns the
    results as written to results.json but for ``items``, which holds only the rows report.md quotes
    (the caller prints the table from it; results.json's items are streamed from the spool).

    ``eval.limit`` takes the same seeded stratified sample of the items as ``evaluate``; responses
    to items outside it are checked and left out.

    Raises:
        InputError: a bad items or responses file (file, line, field).
    """

    items_source, responses_source, out = Path(items_path), Path(responses_path), Path(out_dir)
    all_items = read_eval_items(items_source)
    items = stratified_sample(all_items, settings.limit, settings.seed)
    with read_scored(responses_source, all_items, items) as scored:
        pairs, families = comparison_plan(settings, scored.columns.variants)
        results = summarise_columns(items, scored.columns, pairs=pairs, confidence=settings.confidence, q=settings.q,
                                    bootstrap_samples=settings.bootstrap_samples, seed=settings.seed,
                                    min_category_items=settings.min_category_items, families=families)
        results["skipped_variants"] = {}
        results["settings"] = settings_to_dict(settings)
        results["provenance"] = _provenance(settings, items_source, responses_source, len(items))
        results["items"] = scored.rows(items, shown_outcomes(results))
        written = write_reports(out, results, item_lines=scored.item_lines(items))
    counts = {"items": len(items), "variants": len(scored.columns.variants), "comparisons": len(results["comparisons"]),
              "significant": sum(c["significant"] for c in results["comparisons"])}
    manifest = build_manifest(STAGE, config=settings_to_dict(settings), seed=settings.seed,
                              inputs={"items": items_source, "responses": responses_source}, outputs=written, counts=counts)
    write_manifest(out, manifest)
    return results


def _provenance(settings: EvalSettings, items_source: Path, responses_source: Path, count: int) -> dict[str, Any]:
    return {
        "prompt_format": PROMPT_FORMAT,
        "decoding": "generated elsewhere (stage1 score); decoding not known here",
        "items": {"path": str(items_source), "sha256": sha256_file(items_source), "count": count, "limit": settings.limit},
        "responses": {"path": str(responses_source), "sha256": sha256_file(responses_source)},
        "seeds": {"seed": settings.seed, "bootstrap": "sha256(seed:before:after:criterion)"},
        "leakage": {"checked": False, "reason": "stage1 score sees no training data; run `stage1 check-leakage` on it"},
    }
