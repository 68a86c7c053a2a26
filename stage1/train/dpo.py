"""DPO that starts from the SFT model and keeps it as the reference, in one of two ways.

- ``training.sft_handoff: merge`` (unquantised runs): a new LoRA on the merged SFT model. TRL is
  given a fresh ``peft_config`` and no ``ref_model``: the reference is the model with the new
  adapter disabled, exactly base+SFT because SFT was merged first. At step 0 the new adapter's B
  matrices are zero, so policy == reference and the loss is ln 2 (the tests check this).
- ``training.sft_handoff: adapter`` (QLoRA): the SFT adapter itself goes on training, on the base
  held as SFT held it. TRL, given a ``PeftModel`` that already holds an adapter and no
  ``peft_config``, copies it into a frozen ``"ref"`` adapter and scores the reference through it
  (``trl/trainer/dpo_trainer.py``, "a PEFT model with a pretrained adapter"). The reference is then
  the trained SFT model exactly: no merge, no fresh nf4 quantisation of merged weights (which loses
  most of a small LoRA delta), one adapter to serve. Policy == reference at step 0 here too.

Pairs are tokenized here with ``stage1.core.masking.encode_text`` (special-token text in data stays text)
and handed to TRL as ``prompt_ids``/``chosen_ids``/``rejected_ids``; TRL's own tokenization would
parse ``<|endoftext|>`` typed in data as the control token. Rows longer than ``dpo.max_length`` are
handled by ``training.overlong`` before TRL would truncate them.

Four runtime checks (``stage1.train.dpo_checks``, verdicts in ``stage1.core.method_checks``) test that
the method ran, not only the plumbing: the trainer's rows decode to the pairs file, each checked
pair's step-0 loss is ln 2 (the reference is the policy's start), the adapter moved, and the margin
over the reference grew on the eval pairs as the file states them. ``training.method_checks: error``
stops the stage on a failed one; ``warn`` records it in the manifest's ``warnings``.

The DPO-only baseline is the same call with ``model_dir`` = the raw base and ``out_dir`` =
``<run>/dpo_only``; lineage records which parent each adapter belongs to. A DPO arm
(``training.dpo_arms``) is the same call as ``dpo``, on the same model and reference, with
``negative_source``: it trains on (and reports on) that source's pairs of each split only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stage1.core.errors import InputError
from stage1.core.records import PreferencePair, RecordList, record_line
from stage1.core.reward_metrics import chosen_drop_warning, log_prob_shift, summarize_by_group
from stage1.io.records import read_records
from stage1.train.data import build_preference_rows
from stage1.train.logprobs import completion_log_probs
from stage1.train.settings import TrainingSettings

log = logging.getLogger(__name__)

STAGE = "dpo"


def reference_cache_for(settings: TrainingSettings, *, model_dir: Path, sft_adapter: Path | None, splits: dict[str, Path],
                        dpo_config: Any, out: Path, negative_source: str | None = None) -> dict[str, Any] | None:
    """Where each split's reference log-probabilities are kept, and the key parts (None when not
    precomputed); an arm's key also names the source its pairs were taken from."""
    if not settings.precompute_reference:
        return None
    from stage1.io.hashing import sha256_file
    from stage1.io.lineage import adapter_hash, weights_hash
    from stage1.io.manifest import library_versions
    from stage1.train.reference_cache import (
        TOKENIZER_FILES,
        cache_path,
        reference_key,
        reference_parts,
        reference_settings,
    )

    adapter_config = None if sft_adapter is None else sft_adapter / "adapter_config.json"
    shared = {
        "model_hash": weights_hash(model_dir),
        "adapter_hash": adapter_hash(sft_adapter) if sft_adapter is not None else None,
        "adapter_config_hash": sha256_file(adapter_config) if adapter_config is not None and adapter_config.is_file() else None,
        "tokenizer_hashes": {name: sha256_file(model_dir / name) for name in TOKENIZER_FILES if (model_dir / name).is_file()},
        "settings": reference_settings(dpo_config), "quantization": settings.quantization, "dtype": settings.dtype,
        "versions": {k: v for k, v in library_versions().items() if k in ("torch", "transformers", "trl", "peft", "bitsandbytes")},
    }
    parts = {split: reference_parts(pairs_hash=sha256_file(path), **shared) for split, path in splits.items()}
    if negative_source is not None:
        parts = {split: {**part, "negative_source": negative_source} for split, part in parts.items()}
    return {"parts": parts, "paths": {split: cache_path(out, reference_key(part), split) for split, part in parts.items()}}


def pairs_of_source(pairs: RecordList, source: str | None) -> RecordList:
    """The pairs whose rejected came from ``source`` (all of them for None), each with its file line."""
    if source is None:
        return pairs
    kept = [index for index, pair in enumerate(pairs) if pair.negative_source == source]
    return RecordList([pairs[index] for index in kept], [record_line(pairs, index) for index in kept])


def read_arm_pairs(path: str | Path, source: str | None, split: str) -> RecordList:
    """A pairs file as a DPO stage trains on it: every pair, or an arm's source's only.

    Raises:
        InputError: an arm's source has no pair in the file (naming the file and ``training.dpo_arms``).
    """
    pairs = read_records(path, PreferencePair)
    kept = pairs_of_source(pairs, source)
    if not pairs and source is None:  # no arm to blame: the split itself is empty (pairs.eval_fraction=0 for eval)
        raise InputError(f"no preference pair in the {split} split", path=path,
                         field="pairs.eval_fraction" if split == "eval" else "pairs",
                         hint="pairs.eval_fraction must be above 0 for DPO's eval split, e.g. 0.1" if split == "eval"
                         else "check the negatives and pairs stages' counts")
    if not kept:
        found = ", ".join(sorted({pair.negative_source for pair in pairs})) or "none"
        raise InputError(f"the {source} arm has no {source} pair in the {split} split (sources there: {found})",
                         path=path, field="training.dpo_arms",
                         hint=f"set negatives.source: mixed, or take {source} out of training.dpo_arms"
                              + (" (more policy pairs: raise negatives.policy.k or pairs.eval_fraction)" if source == "policy" else ""))
    return kept


def pair_rewards(model, tokenizer, rows: list[dict], beta: float, batch_size: int) -> tuple[list[float], list[float]]:
    """Implicit rewards ``beta * (log pi - log pi_ref)`` of chosen and rejected for each pair.

    The policy is ``model`` with its adapter; the reference is its frozen ``"ref"`` adapter when it has
    one (DPO continued the SFT adapter), otherwise the same model with the adapter disabled. Written by hand rather than through TRL's fused LM head: on CPU that head projects
    every position (prompt included) onto the 152k vocabulary in tiles, which made scoring the
    eval split cost more than training; here only completion positions are projected.
    """
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.utils import use_adapter

    collate = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    device = next(model.parameters()).device
    chosen_rewards, rejected_rewards = [], []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[start : start + batch_size]).items()}
            with torch.no_grad():
                policy = completion_log_probs(model, batch)
                with use_adapter(model, "ref" if "ref" in getattr(model, "peft_config", {}) else None):
                    reference = completion_log_probs(model, batch)
            rewards = (beta * (policy - reference)).float().cpu().tolist()
            half = len(rewards) // 2
            chosen_rewards += rewards[:half]
            rejected_rewards += rewards[half:]
    finally:
        model.train(was_training)
    return chosen_rewards, rejected_rewards


def run_train_dpo(
    settings: TrainingSettings,
    *,
    model_dir: str | Path,
    train_path: str | Path,
    eval_path: str | Path,
    out_dir: str | Path,
    dpo_args: dict[str, Any],
    lora_args: dict[str, Any],
    seed: int = 0,
    resume: bool = True,
    stage_fingerprint: str | None = None,
    callbacks: tuple = (),
    sft_adapter_dir: str | Path | None = None,
    negative_source: str | None = None,
) -> dict[str, Any]:
    """Train a LoRA with DPO on the model in ``model_dir`` (the merged SFT model, or the base for DPO-only).

    With ``negative_source`` (a DPO arm) only the pairs whose rejected came from that source are
    trained on and scored, in both splits; the manifest names the source.

    With ``sft_adapter_dir`` (``training.sft_handoff: adapter``) ``model_dir`` is the base and the
    SFT adapter found there is trained on, its frozen copy the reference; the adapter written is the
    continued one (SFT + DPO), with the base as its parent.

    Writes ``out_dir/adapter/`` (adapter + lineage.json naming ``model_dir`` as parent), checkpoints
    under ``out_dir/checkpoints/``, ``log_history.json``, and ``manifest.json`` last, with
    ``reward_accuracy`` and ``by_kind`` computed on the eval pairs after training. ``resume`` and
    ``stage_fingerprint`` work as in ``run_train_sft``.

    Raises:
        InputError / ConfigError: bad pairs, overlong pairs under ``overlong="error"``, unknown or
            stage-owned keys, an effective batch off its target.
        LineageError: ``model_dir`` is a merged model trained with another quantisation.
        TrainingError: a non-finite loss (the last good checkpoint is kept), or an adapter on other
            modules than planned.
        MethodCheckError: a runtime method check failed under ``training.method_checks: error``
            (before training for the rows, the step-0 loss and nothing trainable; after it for the
            adapter's movement and the held-out margin; no manifest is written).
    """
    from datasets import Dataset
    from trl import DPOConfig

    from stage1.core.errors import TrainingError
    from stage1.hf.lora import build_lora_config, check_trained_modules
    from stage1.hf.models import check_quantization, eos_info, load_adapter, load_tokenizer
    from stage1.io.lineage import adapter_hash, read_lineage
    from stage1.train import run
    from stage1.train.callbacks import NonFiniteLossGuard, quiet_trainer
    from stage1.train.dpo_checks import DPOMethodChecks
    from stage1.train.dpo_trainer import PreTokenizedDPOTrainer
    from stage1.train.step_plan import log_step_plan, step_plan
    from stage1.train.trainer_config import check_effective_batch, resolve_device

    out = Path(out_dir)
    parent = read_lineage(model_dir, required=False)
    if parent is not None:
        check_quantization(parent.quantization, settings.quantization)
    device = resolve_device(settings)
    if settings.precompute_reference:
        dpo_args = {**dict(dpo_args or {}), "precompute_ref_log_probs": True}
    dpo_config = run.build_config(DPOConfig, dpo_args, "dpo", settings, device, out, seed)
    batch = check_effective_batch(dpo_config, settings.dpo_target_effective_batch, section="dpo", target_field="dpo_target_effective_batch")
    lora_config = build_lora_config(lora_args, require_all_projections=settings.require_all_projections)
    tokenizer = load_tokenizer(model_dir)
    paths = {"train": Path(train_path), "eval": Path(eval_path)}
    pairs = {split: read_arm_pairs(path, negative_source, split) for split, path in paths.items()}
    prepared = {split: build_preference_rows(tokenizer, pairs[split], max_length=dpo_config.max_length, overlong=settings.overlong,
                                             source=path) for split, path in paths.items()}
    steps = step_plan(STAGE, len(prepared["train"].rows), dpo_config, batch.processes, settings.min_optimizer_steps,
                      name=f"dpo_{negative_source}" if negative_source else "")
    log_step_plan(steps, log)
    model = run.load_model_for_training(model_dir, settings, device)
    sft_adapter = None if sft_adapter_dir is None else Path(sft_adapter_dir)
    if sft_adapter is not None:
        check_quantization(read_lineage(sft_adapter).quantization, settings.quantization)
        model = load_adapter(model, sft_adapter, expected_parent=model_dir, is_trainable=True)
    cache = reference_cache_for(settings, model_dir=Path(model_dir), sft_adapter=sft_adapter,
                                splits={"train": Path(train_path), "eval": Path(eval_path)}, dpo_config=dpo_config, out=out,
                                negative_source=negative_source)
    trainer = PreTokenizedDPOTrainer(
        reference_cache=cache,
        model=model, args=dpo_config, processing_class=tokenizer, peft_config=None if sft_adapter is not None else lora_config,
        train_dataset=Dataset.from_list(prepared["train"].rows), eval_dataset=Dataset.from_list(prepared["eval"].rows),
        callbacks=[NonFiniteLossGuard(), *callbacks],
    )
    quiet_trainer(trainer)
    parent_kind = "sft_adapter" if sft_adapter is not None else (parent.kind if parent is not None else "base")
    if sft_adapter is not None:
        if "ref" not in trainer.model.peft_config:
            raise TrainingError("TRL kept no frozen 'ref' copy of the SFT adapter: the reference would be the raw base")
        moving = [name for name, param in trainer.model.named_parameters() if ".ref." in name and param.requires_grad]
        if moving:
            raise TrainingError(f"the reference adapter would train ({moving[0]}, ...): the reference must stay the SFT model")
    started_from = {"sft_adapter": str(sft_adapter), "sft_adapter_hash": adapter_hash(sft_adapter)} if sft_adapter is not None else {}
    facts = run.TrainingFacts(
        stage=STAGE, settings=settings, model_dir=Path(model_dir), out_dir=out, seed=seed,
        user_args={"dpo": dict(dpo_args), "lora": dict(lora_args)}, resolved=run.resolved_args(dpo_config, lora_config),
        data={"train": Path(train_path), "eval": Path(eval_path),
              **({"sft_adapter": sft_adapter / "adapter_model.safetensors"} if sft_adapter is not None else {})},
        eos=eos_info(model, tokenizer),
        trained_modules=check_trained_modules(trainer.model, lora_config, model.config.num_hidden_layers), batch=batch,
        lineage_kind="dpo_adapter", lineage_extra={"parent_kind": parent_kind, "beta": dpo_config.beta, **started_from,
                       **({"negative_source": negative_source} if negative_source is not None else {})},
    )
    method = DPOMethodChecks(settings, tokenizer, {split: (paths[split], pairs[split], prepared[split]) for split in paths})
    method.before_training(trainer)
    outcome = run.train(trainer, facts, resume=resume, stage_fingerprint=stage_fingerprint)
    counts, measured = _after_training(trainer, tokenizer, settings, dpo_config, prepared, method)
    extra = {
        **outcome,
        **({"negative_source": negative_source} if negative_source is not None else {}),
        "parent_kind": parent_kind,
        **started_from,
        **measured,
        "step_plan": steps.to_dict(),
        "reference": {"precomputed": bool(dpo_config.precompute_ref_log_probs),
                      "cache": None if cache is None else {split: str(path) for split, path in cache["paths"].items()},
                      "cache_hits": getattr(trainer, "stage1_reference_cache_hits", 0)},
    }
    return run.finish(trainer, facts, counts=counts, extra=extra)


def _after_training(trainer, tokenizer, settings: TrainingSettings, dpo_config, prepared: dict, method) -> tuple[dict, dict]:
    """The manifest's counts, and what was measured after training: the method checks (which raise
    under ``training.method_checks: error``), rewards on the eval pairs, the log-prob shifts."""
    from stage1.core.reward_metrics import summarize_by_kind

    method_checks = method.after_training(trainer, max_length=dpo_config.max_length)
    chosen, rejected = pair_rewards(trainer.model, tokenizer, prepared["eval"].rows, dpo_config.beta, settings.reward_eval_batch_size)
    rewards = summarize_by_kind(prepared["eval"].kinds, chosen, rejected)
    log.info("eval reward accuracy %.3f, margin %.4f; by kind: %s", rewards["overall"]["reward_accuracy"],
             rewards["overall"]["mean_margin"], {k: round(v["reward_accuracy"], 3) for k, v in rewards["by_kind"].items()})
    diagnostics = chosen_logp_diagnostics(prepared["eval"], chosen, rejected, dpo_config.beta, settings.max_chosen_logp_drop)
    counts = {
        **{f"pairs_{split}": len(rows.rows) for split, rows in prepared.items()},
        **{f"dropped_overlong_{split}": len(rows.dropped_ids) for split, rows in prepared.items()},
        "tokens_train": prepared["train"].tokens,
        "steps": trainer.state.global_step,
    }
    measured = {
        "beta": dpo_config.beta,
        "reward_accuracy": rewards["overall"]["reward_accuracy"],
        "reward_margin": rewards["overall"]["mean_margin"],
        "rewards": rewards["overall"],
        "by_kind": rewards["by_kind"],
        **diagnostics,
        "warnings": diagnostics["warnings"] + method.warnings,
        "method_checks": method_checks,
    }
    return counts, measured


def chosen_logp_diagnostics(rows, chosen: list[float], rejected: list[float], beta: float, max_drop: float | None) -> dict[str, Any]:
    """The manifest's view of what DPO did to each side: log-prob shifts overall, by kind and by
    source, rewards by source, and the chosen-drop warning (also logged)."""
    kinds = rows.kinds
    sources = list(rows.sources) or ["rules"] * len(kinds)
    shift = log_prob_shift(chosen, rejected, beta)

    def shifts_by(labels: list[str]) -> dict[str, Any]:
        grouped: dict[str, tuple[list[float], list[float]]] = {}
        for label, c, r in zip(labels, chosen, rejected):
            grouped.setdefault(label, ([], []))
            grouped[label][0].append(c)
            grouped[label][1].append(r)
        return {label: log_prob_shift(c, r, beta).to_dict() for label, (c, r) in sorted(grouped.items())}

    warning = chosen_drop_warning(shift, max_drop)
    if warning:
        log.warning("dpo: %s", warning)
    log.info("eval chosen log-prob shift %.4f (%.0f%% fell), rejected %.4f", shift.mean_chosen,
             100 * shift.chosen_fell_share, shift.mean_rejected)
    return {
        "logp_shift": {**shift.to_dict(), "by_kind": shifts_by(kinds), "by_source": shifts_by(sources)},
        "by_source": summarize_by_group(sources, chosen, rejected),
        "max_chosen_logp_drop": max_drop,
        "warnings": [warning] if warning else [],
    }
