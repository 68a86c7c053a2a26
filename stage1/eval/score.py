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
from stage1.core.errors import InputError
from stage1.core.eval_items import EvalItem, EvalResponse, stratified_sample
from stage1.core.format import STOP_MAX_TOKENS, STOP_REASONS, parse_completion
from stage1.core.records import RecordError, _choice, _get, _id
from stage1.eval.report import write_reports
from stage1.eval.settings import EvalSettings
from stage1.eval.stage import PROMPT_FORMAT
from stage1.eval.summary import summarise
from stage1.io.hashing import sha256_file
from stage1.io.manifest import build_manifest, write_manifest
from stage1.io.out_paths import check_out_dir
from stage1.io.records import read_eval_items, read_records
from stage1.io.run_lock import lock_for_output

STAGE = "score"
RESPONSE_FIELDS = ("item_id", "variant", "response", "stop_reason", "num_tokens")


def response_from_row(row: dict[str, Any], known_items: set[str]) -> EvalResponse:
    """One responses-file row as the ``EvalResponse`` the criteria read.

    Raises:
        RecordError: an unknown field or item, a missing or mistyped field, an unknown stop reason.
    """
    for key in row:
        if key not in RESPONSE_FIELDS:
            raise RecordError(key, "unknown field", hint=f"allowed fields: {', '.join(RESPONSE_FIELDS)}")
    item_id = _id(row, "item_id")
    if item_id not in known_items:
        raise RecordError("item_id", f"no evaluation item has id {item_id!r}", hint="score responses against the items they answer")
    variant = _get(row, "variant", str).strip()
    if not variant:
        raise RecordError("variant", "is empty", hint="name the model that wrote the response, e.g. \"sft\"")
    text = _get(row, "response", str)
    stop_reason = None if row.get("stop_reason") is None else _choice(row, "stop_reason", STOP_REASONS)
    num_tokens = _get(row, "num_tokens", int, None)
    if num_tokens is not None and num_tokens < 0:
        raise RecordError("num_tokens", f"must be 0 or more, got {num_tokens}")
    parsed = parse_completion(text, finished_by_eos=stop_reason != STOP_MAX_TOKENS)
    return EvalResponse(
        item_id=item_id, variant=variant, prompt="", completion_text=text, response=parsed.response,
        stop_reason=stop_reason or parsed.stop_reason, runaway=parsed.runaway or stop_reason == "runaway", num_tokens=num_tokens,
    )


def read_responses(path: str | Path, items: Sequence[EvalItem]) -> dict[str, dict[str, EvalResponse]]:
    """``{variant: {item_id: response}}``, variants in the order they first appear.

    Raises:
        InputError: a bad row (file, line, field), the same (variant, item) twice, a variant
            without a response to some item, or no rows.
    """
    source = Path(path)
    known = {item.id for item in items}  # once, not per row
    records = read_records(source, lambda row: response_from_row(row, known))
    if not records:
        raise InputError("no responses", path=source, hint='one JSON object per line: {"item_id", "variant", "response"}')
    responses: dict[str, dict[str, EvalResponse]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for response, line in zip(records, records.lines):
        key = (response.variant, response.item_id)
        if key in first_line:
            raise InputError(f"variant {response.variant!r} answers item {response.item_id!r} twice (first on line {first_line[key]})",
                             path=source, line=line, field="item_id", hint="keep one response per item and variant")
        first_line[key] = line
        responses.setdefault(response.variant, {})[response.item_id] = response
    for variant, by_item in responses.items():
        missing = [item.id for item in items if item.id not in by_item]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(f"variant {variant!r} has no response to {len(missing)} item(s): {shown}", path=source, field="item_id",
                             hint="every variant answers every item (or give the items file the responses cover)")
    return responses


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
    results as written to results.json (so the caller need not read them back).

    ``eval.limit`` takes the same seeded stratified sample of the items as ``evaluate``; responses
    to items outside it are left out.

    Raises:
        InputError: a bad items or responses file (file, line, field).
    """

    items_source, responses_source, out = Path(items_path), Path(responses_path), Path(out_dir)
    all_items = read_eval_items(items_source)
    responses = read_responses(responses_source, all_items)
    items = stratified_sample(all_items, settings.limit, settings.seed)
    kept = {item.id for item in items}
    responses = {variant: {i: r for i, r in by_item.items() if i in kept} for variant, by_item in responses.items()}
    pairs, families = comparison_plan(settings, list(responses))
    results = summarise(items, responses, pairs=pairs, confidence=settings.confidence, q=settings.q,
                        bootstrap_samples=settings.bootstrap_samples, seed=settings.seed,
                        min_category_items=settings.min_category_items, families=families)
    results["skipped_variants"] = {}
    results["settings"] = settings_to_dict(settings)
    results["provenance"] = {
        "prompt_format": PROMPT_FORMAT,
        "decoding": "generated elsewhere (stage1 score); decoding not known here",
        "items": {"path": str(items_source), "sha256": sha256_file(items_source), "count": len(items), "limit": settings.limit},
        "responses": {"path": str(responses_source), "sha256": sha256_file(responses_source)},
        "seeds": {"seed": settings.seed, "bootstrap": "sha256(seed:before:after:criterion)"},
        "leakage": {"checked": False, "reason": "stage1 score sees no training data; run `stage1 check-leakage` on it"},
    }
    written = write_reports(out, results)
    counts = {"items": len(items), "variants": len(responses), "comparisons": len(results["comparisons"]),
              "significant": sum(c["significant"] for c in results["comparisons"])}
    manifest = build_manifest(STAGE, config=settings_to_dict(settings), seed=settings.seed,
                              inputs={"items": items_source, "responses": responses_source}, outputs=written, counts=counts)
    write_manifest(out, manifest)
    return results
