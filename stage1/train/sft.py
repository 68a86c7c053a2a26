"""LoRA SFT with the loss on the response only.

TRL's SFTTrainer gets a pre-tokenized dataset of ``input_ids`` + ``labels`` built by
``stage1.core.masking.build_sft_features``: TRL uses a labels column as it is, so the mask is ours and
there is no second tokenization. Rows longer than ``sft.max_length`` are handled here, by the
``training.overlong`` policy, before TRL would cut their ends off. No ``formatting_func`` is ever
passed: with one, TRL trains on every token, the instruction included.

Runs unchanged under ``accelerate launch`` / ``torchrun`` (DDP): every process trains on its share
of each batch and only the main process writes the adapter, lineage and manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stage1.core.records import SFTExample
from stage1.hf.lora import build_lora_config, check_trained_modules
from stage1.hf.models import eos_info, load_tokenizer
from stage1.io.records import read_records
from stage1.train import run
from stage1.train.callbacks import NonFiniteLossGuard, quiet_trainer
from stage1.train.data import SFTRows, build_sft_rows
from stage1.train.names import SFT as STAGE
from stage1.train.settings import TrainingSettings
from stage1.train.step_plan import log_step_plan, step_plan
from stage1.train.trainer_config import check_effective_batch, resolve_device

log = logging.getLogger(__name__)


def build_sft_trainer(*, model, tokenizer, rows: list[dict], sft_config, lora_config, callbacks=()):
    """An SFTTrainer on pre-tokenized rows with a fresh LoRA; no formatting_func, ever."""
    from datasets import Dataset
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=sft_config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config,
        callbacks=list(callbacks),
    )
    quiet_trainer(trainer)
    return trainer


def run_train_sft(
    settings: TrainingSettings,
    *,
    model_dir: str | Path,
    train_path: str | Path,
    out_dir: str | Path,
    sft_args: dict[str, Any],
    lora_args: dict[str, Any],
    resume: bool = True,
    seed: int = 0,
    stage_fingerprint: str | None = None,
    callbacks: tuple = (),
) -> dict[str, Any]:
    """Train a LoRA adapter on ``train_path`` (SFTExample rows) over the model in ``model_dir``.

    Writes ``out_dir/adapter/`` (adapter + lineage.json), checkpoints under
    ``out_dir/checkpoints/``, and ``out_dir/manifest.json`` last.

    Args:
        resume: go on from the last checkpoint written under the same fingerprint (the arguments
            here, the data and parent weights, and ``stage_fingerprint``); off, every checkpoint is
            discarded and training starts over. Checkpoints under another fingerprint are always
            discarded, and one already at ``max_steps`` is finished from, never trained past.
        stage_fingerprint: the pipeline's fingerprint of this stage (its upstream stages included).

    Returns:
        The manifest dict (on the main process; other processes get a short summary).

    Raises:
        InputError / ConfigError: bad rows, overlong rows under ``overlong="error"``, unknown or
            stage-owned keys in ``sft_args``/``lora_args``, an effective batch off its target.
        TrainingError: a non-finite loss (the last good checkpoint is kept), or LoRA weights on
            other modules than planned.
    """
    from trl import SFTConfig

    out = Path(out_dir)
    device = resolve_device(settings)
    sft_config = run.build_config(SFTConfig, sft_args, "sft", settings, device, out, seed)
    batch = check_effective_batch(sft_config, settings.target_effective_batch, section="sft", target_field="target_effective_batch")
    lora_config = build_lora_config(lora_args, require_all_projections=settings.require_all_projections)
    tokenizer = load_tokenizer(model_dir)
    examples = read_records(train_path, SFTExample)
    prepared = build_sft_rows(tokenizer, examples, max_length=sft_config.max_length, overlong=settings.overlong, source=train_path)
    steps = step_plan(STAGE, len(prepared.rows), sft_config, batch.processes, settings.min_optimizer_steps)
    log_step_plan(steps, log)

    model = run.load_model_for_training(model_dir, settings, device)
    sampler = run.sampler(settings, tokenizer, [example.instruction for example in examples[: settings.sample_prompts]])
    trainer = build_sft_trainer(
        model=model, tokenizer=tokenizer, rows=prepared.rows, sft_config=sft_config, lora_config=lora_config,
        callbacks=[NonFiniteLossGuard(), *callbacks, *([sampler] if sampler else [])],
    )
    facts = run.TrainingFacts(
        stage=STAGE, settings=settings, model_dir=Path(model_dir), out_dir=out, seed=seed,
        user_args={"sft": dict(sft_args), "lora": dict(lora_args)}, resolved=run.resolved_args(sft_config, lora_config),
        data={"train": Path(train_path)}, eos=eos_info(model, tokenizer),
        trained_modules=check_trained_modules(trainer.model, lora_config, model.config.num_hidden_layers), batch=batch,
    )
    outcome = run.train(trainer, facts, resume=resume, stage_fingerprint=stage_fingerprint)
    counts = _counts(len(examples), prepared, trainer.state.global_step)
    extra = {**outcome, "dropped_ids": list(prepared.dropped_ids[:50]), "samples": sampler.samples if sampler else [],
             "step_plan": steps.to_dict()}
    return run.finish(trainer, facts, counts=counts, extra=extra)


def _counts(rows_read: int, prepared: SFTRows, steps: int) -> dict[str, Any]:
    """The manifest's counts: rows read, trained and dropped (by reason), tokens, optimizer steps."""
    return {
        "rows_read": rows_read,
        "rows_trained": len(prepared.rows),
        "dropped_overlong": len(prepared.dropped_ids),
        "dropped_by_reason": prepared.dropped,
        "supervised_tokens": prepared.supervised_tokens,
        "tokens": prepared.total_tokens,
        "steps": steps,
    }
