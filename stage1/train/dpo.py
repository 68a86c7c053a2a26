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

from stage1.core.errors import InputError, TrainingError
from stage1.core.records import PreferencePair, RecordList, record_line
from stage1.core.reward_metrics import chosen_drop_warning, log_prob_shift, summarize_by_group, summarize_by_kind
from stage1.hf.lora import build_lora_config, check_trained_modules
from stage1.hf.models import check_quantization, eos_info, load_adapter, load_tokenizer
from stage1.io.hashing import sha256_file
from stage1.io.layout import source_arm
from stage1.io.lineage import adapter_hash, read_lineage, weights_hash
from stage1.io.manifest import library_versions
from stage1.io.records import read_records
from stage1.train import run
from stage1.train.callbacks import NonFiniteLossGuard, quiet_trainer
from stage1.train.data import PreferenceRows, build_preference_rows
from stage1.train.dpo_checks import DPOMethodChecks
from stage1.train.logprobs import completion_log_probs
from stage1.train.names import DPO as STAGE
from stage1.train.reference_cache import TOKENIZER_FILES, cache_path, reference_key, reference_parts, reference_settings
from stage1.train.settings import TrainingSettings
from stage1.train.step_plan import log_step_plan, step_plan
from stage1.train.trainer_config import check_effective_batch, resolve_device

log = logging.getLogger(__name__)


def reference_cache_for(settings: TrainingSettings, *, model_dir: Path, sft_adapter: Path | None, splits: dict[str, Path],
                        dpo_config: Any, out: Path, negative_source: str | None = None) -> dict[str, Any] | None:
    """Where each split's reference log-probabilities are kept, and the key parts (None when not
    precomputed); an arm's key also names the source its pairs were taken from."""
    if not settings.precompute_reference:
        return None
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
    out, model_dir = Path(out_dir), Path(model_dir)
    sft_adapter = None if sft_adapter_dir is None else Path(sft_adapter_dir)
    parent = _checked_parent(model_dir, settings)
    device = resolve_device(settings)
    if settings.precompute_reference:  # recorded with the user's keys: the run's DPOConfig holds it
        dpo_args = {**dict(dpo_args or {}), "precompute_ref_log_probs": True}
    dpo_config = dpo_trainer_config(settings, dpo_args, device, out, seed)
    batch = check_effective_batch(dpo_config, settings.dpo_target_effective_batch, section="dpo", target_field="dpo_target_effective_batch")
    lora_config = build_lora_config(lora_args, require_all_projections=settings.require_all_projections)
    tokenizer = load_tokenizer(model_dir)
    paths = {"train": Path(train_path), "eval": Path(eval_path)}
    pairs, prepared = _read_splits(tokenizer, paths, negative_source, dpo_config.max_length, settings.overlong)
    steps = _logged_step_plan(len(prepared["train"].rows), dpo_config, batch.processes, settings, negative_source)
    model = _load_policy(model_dir, settings, device, sft_adapter)
    cache = reference_cache_for(settings, model_dir=model_dir, sft_adapter=sft_adapter, splits=paths, dpo_config=dpo_config,
                                out=out, negative_source=negative_source)
    trainer = _build_trainer(model, tokenizer, dpo_config, prepared, cache=cache, callbacks=callbacks,
                             peft_config=None if sft_adapter is not None else lora_config)
    origin = _origin(parent, sft_adapter, negative_source)
    facts = run.TrainingFacts(
        stage=STAGE, settings=settings, model_dir=model_dir, out_dir=out, seed=seed,
        user_args={"dpo": dict(dpo_args), "lora": dict(lora_args)}, resolved=run.resolved_args(dpo_config, lora_config),
        data={**paths, **({"sft_adapter": sft_adapter / "adapter_model.safetensors"} if sft_adapter is not None else {})},
        eos=eos_info(model, tokenizer),
        trained_modules=check_trained_modules(trainer.model, lora_config, model.config.num_hidden_layers), batch=batch,
        lineage_kind="dpo_adapter", lineage_extra={**origin, "beta": dpo_config.beta},
    )
    method = DPOMethodChecks(settings, tokenizer, {split: (paths[split], pairs[split], prepared[split]) for split in paths})
    method.before_training(trainer)
    outcome = run.train(trainer, facts, resume=resume, stage_fingerprint=stage_fingerprint)
    counts, measured = _after_training(trainer, tokenizer, settings, dpo_config, prepared, method)
    extra = {**outcome, **origin, **measured, "step_plan": steps.to_dict(), "reference": _reference_record(dpo_config, cache, trainer)}
    return run.finish(trainer, facts, counts=counts, extra=extra)


def dpo_trainer_config(settings: TrainingSettings, dpo_args: dict[str, Any], device: str, out: Path, seed: int):
    """TRL's ``DPOConfig`` of the ``dpo:`` section (``beta`` and every other key as written), over the
    stage's defaults, with the keys the stage owns (``run.build_config``)."""
    from trl import DPOConfig  # trl imports torch: deferred to the stage's run

    return run.build_config(DPOConfig, dpo_args, "dpo", settings, device, out, seed)


def _build_trainer(model, tokenizer, dpo_config, prepared: dict[str, PreferenceRows], *, cache: dict[str, Any] | None,
                   callbacks: tuple, peft_config):
    """The DPO trainer on the prepared rows; continuing an adapter (no ``peft_config``), its frozen
    reference copy is checked.

    Raises:
        TrainingError: see ``_check_frozen_reference``.
    """
    from datasets import Dataset  # datasets imports torch: deferred to the stage's run

    from stage1.train.dpo_trainer import PreTokenizedDPOTrainer  # subclasses trl.DPOTrainer at import

    trainer = PreTokenizedDPOTrainer(
        reference_cache=cache,
        model=model, args=dpo_config, processing_class=tokenizer, peft_config=peft_config,
        train_dataset=Dataset.from_list(prepared["train"].rows), eval_dataset=Dataset.from_list(prepared["eval"].rows),
        callbacks=[NonFiniteLossGuard(), *callbacks],
    )
    quiet_trainer(trainer)
    if peft_config is None:
        _check_frozen_reference(trainer.model)
    return trainer


def _checked_parent(model_dir: Path, settings: TrainingSettings):
    """The lineage of the model DPO starts from (None for a base model).

    Raises:
        LineageError: a merged model trained with another quantisation than this run's.
    """
    parent = read_lineage(model_dir, required=False)
    if parent is not None:
        check_quantization(parent.quantization, settings.quantization)
    return parent


def _logged_step_plan(rows: int, dpo_config, processes: int, settings: TrainingSettings, negative_source: str | None):
    """The optimizer steps this DPO will take (an arm's named after it), logged with any warning."""
    steps = step_plan(STAGE, rows, dpo_config, processes, settings.min_optimizer_steps,
                      name=source_arm(negative_source).name if negative_source else "")
    log_step_plan(steps, log)
    return steps


def _read_splits(tokenizer, paths: dict[str, Path], negative_source: str | None, max_length: int | None,
                 overlong: str) -> tuple[dict[str, RecordList], dict[str, PreferenceRows]]:
    """Each split's pairs (an arm's source's only) and the rows the trainer is given."""
    pairs = {split: read_arm_pairs(path, negative_source, split) for split, path in paths.items()}
    prepared = {split: build_preference_rows(tokenizer, pairs[split], max_length=max_length, overlong=overlong, source=path)
                for split, path in paths.items()}
    return pairs, prepared


def _load_policy(model_dir: Path, settings: TrainingSettings, device: str, sft_adapter: Path | None):
    """The model DPO trains: the model in ``model_dir``, with the SFT adapter on it (trainable) when
    DPO continues that adapter.

    Raises:
        LineageError: the SFT adapter was trained with another quantisation, or on another parent.
    """
    model = run.load_model_for_training(model_dir, settings, device)
    if sft_adapter is None:
        return model
    check_quantization(read_lineage(sft_adapter).quantization, settings.quantization)
    return load_adapter(model, sft_adapter, expected_parent=model_dir, is_trainable=True)


def _check_frozen_reference(model) -> None:
    """DPO continuing the SFT adapter needs TRL's frozen ``"ref"`` copy of it as the reference.

    Raises:
        TrainingError: TRL kept no such copy, or the copy would train.
    """
    if "ref" not in model.peft_config:
        raise TrainingError("TRL kept no frozen 'ref' copy of the SFT adapter: the reference would be the raw base")
    moving = [name for name, param in model.named_parameters() if ".ref." in name and param.requires_grad]
    if moving:
        raise TrainingError(f"the reference adapter would train ({moving[0]}, ...): the reference must stay the SFT model")


def _origin(parent, sft_adapter: Path | None, negative_source: str | None) -> dict[str, Any]:
    """What the adapter was trained from, for its lineage and the manifest: the parent's kind, the
    SFT adapter continued (and its hash), and an arm's pair source."""
    origin: dict[str, Any] = {"parent_kind": "sft_adapter" if sft_adapter is not None else (parent.kind if parent is not None else "base")}
    if sft_adapter is not None:
        origin.update(sft_adapter=str(sft_adapter), sft_adapter_hash=adapter_hash(sft_adapter))
    if negative_source is not None:
        origin["negative_source"] = negative_source
    return origin


def _reference_record(dpo_config, cache: dict[str, Any] | None, trainer) -> dict[str, Any]:
    """How the reference log-probabilities were had: precomputed or not, the cache files, their hits."""
    return {"precomputed": bool(dpo_config.precompute_ref_log_probs),
            "cache": None if cache is None else {split: str(path) for split, path in cache["paths"].items()},
            "cache_hits": getattr(trainer, "stage1_reference_cache_hits", 0)}


def _after_training(trainer, tokenizer, settings: TrainingSettings, dpo_config, prepared: dict, method) -> tuple[dict, dict]:
    """The manifest's counts, and what was measured after training: the method checks (which raise
    under ``training.method_checks: error``), rewards on the eval pairs, the log-prob shifts."""
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
