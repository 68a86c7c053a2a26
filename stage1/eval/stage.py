"""The evaluation stage: every variant on the same held-out items, scored, compared, reported.

``run_evaluate`` reads the items file, the variants' model and adapter folders and (for the
leakage gate) the training files; it writes only into ``out_dir``::

    out_dir/generations/<variant>.json   one per variant, written as soon as that variant is done
    out_dir/results.json                 every item, verdict, rate, comparison and flip
    out_dir/report.md, chart.png         what a person reads
    out_dir/manifest.json                last

Variants run one at a time (see stage1.eval.runner); a missing variant is skipped and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.errors import ConfigError, InputError
from stage1.core.eval_items import EvalItem, EvalResponse, stratified_sample
from stage1.core.format import END_MARKER, INSTRUCTION_TAG, RESPONSE_TAG, STOP_STRINGS
from stage1.eval.runner import MemoryGuard, run_job, run_job_in_subprocess
from stage1.eval.settings import (
    ARM_VARIANTS,
    DEFAULT_COMPARISONS,
    VARIANT_NAMES,
    EvalSettings,
    VariantSpec,
    parse_comparison,
)
from stage1.eval.summary import summarise
from stage1.eval.variant_identity import check_identities
from stage1.io.atomic import atomic_write_json
from stage1.io.hashing import sha256_file, sha256_tree
from stage1.io.layout import GENERATIONS_DIR
from stage1.io.manifest import build_manifest, config_hash, write_manifest
from stage1.io.plain import read_json
from stage1.io.records import leakage_gate_on_files, read_eval_items

log = logging.getLogger(__name__)

STAGE = "eval"
DRY_RUN_NAME = "dry_run.json"
PROMPT_FORMAT = f"{INSTRUCTION_TAG} {{instruction}}\n{RESPONSE_TAG} {{response}}\n{END_MARKER}"

__all__ = ["DEFAULT_COMPARISONS", "VARIANT_NAMES", "EvalSettings", "VariantSpec", "parse_comparison", "run_evaluate"]


def select_variants(settings: EvalSettings, variants: Sequence[VariantSpec]) -> tuple[list[VariantSpec], dict[str, str]]:
    """The variants to run, in ``VARIANT_NAMES`` order, and why each other one is skipped (a DPO
    arm's variant is not part of a run that did not train it, and is not listed as skipped).

    Raises:
        ConfigError: two specs with the same name.
    """
    names = [spec.name for spec in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"variants given twice: {sorted({n for n in names if names.count(n) > 1})}", field="variants")
    given = {spec.name: spec for spec in variants}
    chosen: list[VariantSpec] = []
    skipped: dict[str, str] = {}
    for name in VARIANT_NAMES:
        spec = given.get(name)
        if spec is None and name in ARM_VARIANTS:
            continue
        if spec is None:
            skipped[name] = "no model given for this variant"
        elif name not in settings.variants:
            skipped[name] = "not selected (eval.variants)"
        elif not (spec.model_dir / "config.json").is_file():
            skipped[name] = f"model folder not found: {spec.model_dir}"
        elif spec.adapter_dir is not None and not spec.adapter_dir.is_dir():
            skipped[name] = f"adapter not found: {spec.adapter_dir}"
        else:
            chosen.append(spec)
    return chosen, skipped


def describe_variant(spec: VariantSpec, settings: EvalSettings) -> dict[str, Any]:
    """Hashes and lineage facts of one variant; refuses a quantisation mismatch unless allowed.

    Raises:
        LineageError: the checkpoint was trained with another quantisation (and no override).
    """
    from stage1.hf.models import check_quantization
    from stage1.io.lineage import adapter_hash, read_lineage, weights_hash

    described = spec.to_dict()
    described["model_hash"] = weights_hash(spec.model_dir)
    described["adapter_hash"] = None
    matched = True
    lineages = {}
    for role, folder in (("model", spec.model_dir), ("adapter", spec.adapter_dir)):
        lineage = lineages[role] = None if folder is None else read_lineage(folder, required=folder == spec.adapter_dir)
        if lineage is not None:
            matched &= check_quantization(lineage.quantization, spec.quantization, allow_mismatch=settings.allow_quantization_mismatch)
    if spec.adapter_dir is not None:
        described["adapter_hash"] = adapter_hash(spec.adapter_dir)
    described["quantization_matches_training"] = matched
    described["model"] = model_facts(spec.model_dir)
    adapter = lineages["adapter"]
    described["lineage"] = {  # what stage1.eval.variant_identity checks the variant's name against
        "model_kind": None if lineages["model"] is None else lineages["model"].kind,
        "adapter_kind": None if adapter is None else adapter.kind,
        "parent_kind": None if adapter is None else adapter.extra.get("parent_kind"),
        "sft_adapter_hash": None if adapter is None else adapter.extra.get("sft_adapter_hash"),
    }
    return described


#: What the report's summary says a model is, read from its config.json.
MODEL_FACTS = ("model_type", "num_hidden_layers", "hidden_size", "vocab_size", "_name_or_path")


def model_facts(model_dir: str | Path) -> dict[str, Any]:
    """The architecture facts of a model folder (``MODEL_FACTS`` of its config.json, absent ones
    left out) and the size of its safetensors weights in bytes."""
    from stage1.io.readers import read_json_file

    folder = Path(model_dir)
    config = read_json_file(folder / "config.json") if (folder / "config.json").is_file() else {}
    facts = {key.lstrip("_"): config[key] for key in MODEL_FACTS if isinstance(config, dict) and key in config}
    facts["weights_bytes"] = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
    return facts


def training_pair_lengths(training_paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """``lengths.length_by_kind`` over the preference pairs among the training files (rows with
    ``negative_kind``, ``chosen`` and ``rejected``), each kind with its ``shortcuts`` (the pairs
    stage's shortcut baselines); empty when none is a pairs file."""
    from stage1.core.lengths import length_by_kind
    from stage1.io.readers import iter_rows
    from stage1.pairs.shortcuts import shortcut_baselines

    rows = []
    for path in training_paths:
        if Path(path).is_file():
            rows += [row for _, row in iter_rows(path) if all(isinstance(row.get(key), str) for key in ("negative_kind", "chosen", "rejected"))]
    lengths = length_by_kind((row["negative_kind"], row["chosen"], row["rejected"]) for row in rows)
    shortcuts = shortcut_baselines((row["negative_kind"], str(row.get("prompt")), row["chosen"], row["rejected"]) for row in rows)
    return {kind: {**cell, "shortcuts": shortcuts.get(kind)} for kind, cell in lengths.items()}


def _job(spec: VariantSpec, described: dict[str, Any], items: list[EvalItem], settings: EvalSettings, out: Path, dry_run: bool) -> dict[str, Any]:
    decoding = {"max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size, "dtype": settings.dtype,
                "device": settings.device, "seed": settings.seed, "backend": settings.backend}
    if settings.backend == "vllm":
        decoding["vllm"] = settings_to_dict(settings.vllm)
    identity = {"variant": described, "decoding": decoding, "items": [item.to_dict() for item in items], "dry_run": dry_run}
    suffix = ".dry_run.json" if dry_run else ".json"
    return {
        "spec": spec.to_dict(),
        "items": identity["items"],
        "settings": decoding,
        "parent_hash": described["model_hash"] if spec.adapter_dir is not None else None,
        "fingerprint": config_hash(identity),
        "out_path": str(out / GENERATIONS_DIR / f"{spec.name}{suffix}"),
        "dry_run": dry_run,
    }


def _finished(job: dict[str, Any]) -> dict[str, Any] | None:
    """The record of an earlier run of exactly this job, if one was written."""
    path = Path(job["out_path"])
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if record.get("fingerprint") == job["fingerprint"] else None


def run_variants(jobs: list[dict[str, Any]], settings: EvalSettings, out: Path, in_process: bool) -> dict[str, dict[str, Any]]:
    """Run each job once, one at a time, resuming finished ones; returns records by variant."""
    guard = None if in_process else MemoryGuard(settings.memory_tolerance_mib, settings.memory_wait_s)
    records: dict[str, dict[str, Any]] = {}
    for job in jobs:
        name = job["spec"]["name"]
        done = _finished(job)
        if done is not None:
            (out / GENERATIONS_DIR / f".job-{name}.json").unlink(missing_ok=True)  # left by a kill after it finished
            log.info("eval: %s already generated, resuming after it", name)
            records[name] = {**done, "resumed": True}
            continue
        log.info("eval: %s (%s)", name, "in process" if in_process else "subprocess")
        if in_process:
            records[name] = run_job(job)
        else:
            records[name] = run_job_in_subprocess(job, out / GENERATIONS_DIR / f".job-{name}.json", guard)
    return records


def _provenance(items_path: Path, items: list[EvalItem], settings: EvalSettings, described: dict[str, dict[str, Any]],
                training_paths: Sequence[Path], leakage: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt_format": PROMPT_FORMAT,
        "raw_prompt": "base_raw: the instruction alone, no wrapper",
        "decoding": {"do_sample": False, "max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size,
                     "stop_strings": list(STOP_STRINGS), "dtype": settings.dtype, "device": settings.device,
                     "backend": settings.backend},
        "seeds": {"seed": settings.seed, "bootstrap": "sha256(seed:before:after:criterion)"},
        "items": {"path": str(items_path), "sha256": sha256_file(items_path), "count": len(items), "limit": settings.limit},
        "variants": described,
        "training_data": {str(p): sha256_tree(p) for p in training_paths if Path(p).is_file()},
        "leakage": leakage,
    }


def build_results(settings: EvalSettings, items: list[EvalItem], records: dict[str, dict[str, Any]], *,
                  skipped: dict[str, str], provenance: dict[str, Any]) -> dict[str, Any]:
    """The results dict: scored summary, plus skipped variants, settings, provenance and run facts."""
    responses = {name: {row["item_id"]: EvalResponse.from_dict(row) for row in record["responses"]} for name, record in records.items()}
    results = summarise(items, responses, pairs=settings.comparison_pairs, confidence=settings.confidence, q=settings.q,
                        bootstrap_samples=settings.bootstrap_samples, seed=settings.seed, min_category_items=settings.min_category_items,
                        families=settings.family_pairs)
    results["skipped_variants"] = skipped
    results["settings"] = settings_to_dict(settings)
    results["provenance"] = provenance
    results["runs"] = {name: {"memory": r["memory"], "seconds": r["seconds"], "resumed": r.get("resumed", False)} for name, r in records.items()}
    return results


#: What the report shows of each DPO variant's training manifest (stage1.train.dpo).
DPO_TRAINING_KEYS = ("beta", "reward_accuracy", "reward_margin", "logp_shift", "by_kind", "by_source", "max_chosen_logp_drop", "warnings")


def dpo_training_facts(variants: Sequence[VariantSpec]) -> dict[str, dict[str, Any]]:
    """For each variant with an adapter, the DPO diagnostics its training manifest holds (the
    manifest beside the adapter folder); a variant without such a manifest is left out."""
    facts: dict[str, dict[str, Any]] = {}
    for spec in variants:
        if spec.adapter_dir is None:
            continue
        path = spec.adapter_dir.parent / "manifest.json"
        try:
            manifest = read_json(path)
        except (OSError, ValueError):
            continue
        if "logp_shift" in manifest:
            facts[spec.name] = {key: manifest.get(key) for key in DPO_TRAINING_KEYS}
            facts[spec.name]["pairs"] = _pair_sources(manifest)
    return facts


def _pair_sources(dpo_manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Where the DPO training pairs' rejecteds came from, and which criteria chose the policy ones
    (from the pairs manifest beside the training file), or None when it cannot be read. A DPO arm
    trained on one source's pairs only: its own counts say how many (``arm_source`` names it)."""
    train = dpo_manifest.get("inputs", {}).get("train")
    try:
        pairs = read_json(Path(train).parent / "manifest.json") if train else None
    except (OSError, ValueError):
        return None
    if not pairs or pairs.get("stage") != "pairs":
        return None
    facts = {"negative_sources": pairs.get("negative_sources", ["negatives"]), "selection_criteria": pairs.get("selection_criteria"),
             "train_by_source": pairs.get("counts", {}).get("train", {}).get("by_source")}
    source = dpo_manifest.get("negative_source")
    if source is not None:
        counts = dpo_manifest.get("counts", {})
        facts.update(arm_source=source, train_by_source={source: counts.get("pairs_train")}, eval_pairs=counts.get("pairs_eval"))
        if source != "policy":
            facts["selection_criteria"] = None
    return facts


def run_evaluate(
    settings: EvalSettings,
    *,
    variants: list[VariantSpec],
    items_path: str | Path,
    out_dir: str | Path,
    training_paths: Sequence[str | Path] = (),
    dry_run: bool = False,
    in_process: bool = False,
) -> dict[str, Any]:
    """Evaluate every available variant on the items and write the reports.

    Args:
        variants: the candidate models; those missing on disk or not in ``settings.variants`` are
            skipped and reported.
        training_paths: training files for the leakage gate (every one must exist).
        dry_run: load each variant and report its memory, generating nothing; writes only
            ``dry_run.json`` and returns its content.
        in_process: run variants in this process instead of a subprocess each (also
            ``settings.in_process``).

    Returns:
        The manifest dict (for a dry run, the memory report).

    Raises:
        InputError: a malformed items file, or no variant left to evaluate.
        ConfigError: ``in_process`` together with ``settings.backend == "vllm"``.
        GateError: the leakage gate failed or could not run.
        LineageError: an adapter on the wrong weights, or a quantisation mismatch without override.
        VariantIdentityError: a variant is not the model its name says (``stage1.eval.variant_identity``).
    """
    from stage1.eval.report import write_reports

    if in_process and settings.backend == "vllm":
        raise ConfigError("vllm runs each variant in its own process; in_process is not available with it", field="eval.backend")
    out = Path(out_dir)
    items_path = Path(items_path)
    training = [Path(p) for p in training_paths]
    items = stratified_sample(read_eval_items(items_path), settings.limit, settings.seed)
    leakage = leakage_gate_on_files(items_path, training)
    chosen, skipped = select_variants(settings, variants)
    if not chosen:
        raise InputError("no variant to evaluate: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()), field="variants")
    for name, reason in skipped.items():
        log.warning("eval: skipping %s: %s", name, reason)
    described = {spec.name: describe_variant(spec, settings) for spec in chosen}
    check_identities(described)
    jobs = [_job(spec, described[spec.name], items, settings, out, dry_run) for spec in chosen]
    records = run_variants(jobs, settings, out, in_process or settings.in_process)
    if dry_run:
        report = {"dry_run": True, "variants": {n: {"memory": r["memory"], "seconds": r["seconds"]} for n, r in records.items()},
                  "skipped_variants": skipped}
        atomic_write_json(out / DRY_RUN_NAME, report)
        return report

    results = build_results(settings, items, records, skipped=skipped,
                            provenance=_provenance(items_path, items, settings, described, training, leakage))
    results["dpo_training"] = dpo_training_facts(chosen)
    results["pair_lengths"] = training_pair_lengths(training)
    written = write_reports(out, results)
    outputs = {**written, **{f"generations_{job['spec']['name']}": Path(job["out_path"]) for job in jobs}}
    inputs = {"items": items_path, **{f"training_{i}": p for i, p in enumerate(training)},
              **{f"adapter_{s.name}": s.adapter_dir for s in chosen if s.adapter_dir is not None}}
    counts = {"items": len(items), "variants": len(chosen), "skipped_variants": len(skipped),
              "comparisons": len(results["comparisons"]), "significant": sum(c["significant"] for c in results["comparisons"])}
    manifest = build_manifest(STAGE, config=settings_to_dict(settings), seed=settings.seed, inputs=inputs, outputs=outputs,
                              counts=counts, extra={"variants": described, "skipped_variants": skipped, "runs": results["runs"]})
    write_manifest(out, manifest)
    return manifest
