"""What SFT and DPO share around the trainer: loading for training, config building, and the
finish (adapter, lineage, manifest written by the main process only, manifest last)."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage1.core.errors import TrainingError
from stage1.core.format import render_prompt
from stage1.hf import cpu_lm_head
from stage1.hf.models import EosInfo, load_model
from stage1.io.atomic import atomic_write_json
from stage1.io.folders import atomic_folder
from stage1.io.hashing import sha256_file
from stage1.io.layout import ADAPTER_DIR, CHECKPOINTS_DIR
from stage1.io.lineage import (
    ADAPTER_WEIGHTS,
    Lineage,
    portable_path,
    portable_paths_in_files,
    weights_hash,
    write_lineage,
)
from stage1.io.manifest import build_manifest, config_hash, library_versions, write_manifest
from stage1.io.plain import read_json
from stage1.train.callbacks import SampleGenerations, greedy_completions, last_checkpoint
from stage1.train.settings import TrainingSettings
from stage1.train.trainer_config import EffectiveBatch, build_trainer_config, stage_defaults

log = logging.getLogger(__name__)

FINGERPRINT_NAME = "stage1_fingerprint.json"

RESOLVED_KEYS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "num_train_epochs",
    "max_length", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "bf16", "fp16",
    "gradient_checkpointing", "packing", "packing_strategy", "padding_free", "beta", "loss_type", "loss_weights", "optim",
)


def build_config(cls: type, user_args: dict[str, Any] | None, section: str, settings: TrainingSettings, device: str, out_dir: Path, seed: int):
    """The stage's TRL config: our defaults, then the user's section, then the keys the stage owns."""
    owned = {"output_dir": str(out_dir / CHECKPOINTS_DIR), "seed": seed}
    return build_trainer_config(cls, user_args, section=section, defaults=stage_defaults(settings, device, out_dir), owned=owned)


def load_model_for_training(model_dir: str | Path, settings: TrainingSettings, device: str):
    """The frozen base as training holds it: quantised models go to this process's device at load.

    On CPU, bitsandbytes (0.50) repacks an nf4 layer's weights for its AVX512-bf16 inference kernel at
    the first forward in eval mode without grad, and never back; a training forward on repacked weights
    then fails (``result += bias`` on a leaf that requires grad). The greedy samples taken during
    training are such forwards, so a model held for training keeps its training layout throughout.
    """
    device_map = None
    if settings.quantization != "none":
        from accelerate import PartialState

        device_map = {"": PartialState().local_process_index} if device == "cuda" else "cpu"
    model = load_model(model_dir, quantization=settings.quantization, dtype=settings.dtype, device_map=device_map)
    if device == "cpu":
        cpu_lm_head.tune_for_cpu()
        for module in model.modules():
            if getattr(module, "support_avx512bf16_for_cpu", False):
                module.support_avx512bf16_for_cpu = False
    return model


def sampler(settings: TrainingSettings, tokenizer, instructions: list[str]) -> SampleGenerations | None:
    """The periodic greedy-sample callback, or None when ``sample_every_steps`` is 0."""
    if settings.sample_every_steps <= 0 or not instructions:
        return None

    prompts = [render_prompt(text) for text in instructions]

    def generate(model, batch: list[str]) -> list[dict[str, Any]]:
        return greedy_completions(model, tokenizer, batch, settings.sample_max_new_tokens)

    return SampleGenerations(prompts, settings.sample_every_steps, generate)


def resolved_args(trl_config, lora_config) -> dict[str, Any]:
    """The values training really used (after defaults), for lineage and manifests."""
    resolved = {key: getattr(trl_config, key) for key in RESOLVED_KEYS if hasattr(trl_config, key)}
    resolved["lora"] = {
        "r": lora_config.r,
        "lora_alpha": lora_config.lora_alpha,
        "lora_dropout": lora_config.lora_dropout,
        "target_modules": sorted(lora_config.target_modules),
    }
    return {key: list(value) if isinstance(value, (tuple, set)) else value for key, value in resolved.items()}


@dataclass(frozen=True)
class TrainingFacts:
    """Everything ``finish`` records about a training run."""

    stage: str
    settings: TrainingSettings
    model_dir: Path
    out_dir: Path
    seed: int
    user_args: dict[str, Any]
    resolved: dict[str, Any]
    data: dict[str, Path]
    eos: EosInfo
    trained_modules: tuple[str, ...]
    batch: EffectiveBatch
    lineage_kind: str = "sft_adapter"
    lineage_extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {"training": self.settings.recorded(), **self.user_args, "resolved": self.resolved}


def save_adapter(model, adapter_dir: Path, lineage: Lineage, parent_dir: Path | None = None) -> Path:
    """Write the adapter and its lineage into a temporary sibling, then swap it into place
    (``atomic_folder``: a full disk is one line, exit 2, and never half an adapter). PEFT writes the
    parent's path into ``README.md`` and ``adapter_config.json``; it is made portable there (evaluation
    hashes these files: a copied run rerun with ``--force`` must write the same bytes)."""
    shutil.rmtree(adapter_dir.with_name(f".{adapter_dir.name}.partial"), ignore_errors=True)  # an earlier version's temp
    # DPO that continued the SFT adapter also holds TRL's frozen "ref" copy: only the trained one is written.
    selected = ["default"] if "ref" in getattr(model, "peft_config", {}) else None
    with atomic_folder(adapter_dir) as staged:
        model.save_pretrained(str(staged), safe_serialization=True, selected_adapters=selected)
        if parent_dir is not None:
            portable = portable_path(parent_dir, adapter_dir)
            # The path as PEFT got it (maybe relative) and absolute; a bare folder name is left alone (it is also a word).
            paths = {form: portable for form in (os.path.abspath(parent_dir), str(parent_dir)) if os.sep in form}
            portable_paths_in_files(staged, paths, ("README.md", "adapter_config.json"))
        write_lineage(staged, lineage)
    return adapter_dir


def finish(trainer, facts: TrainingFacts, *, counts: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Save adapter + lineage, the log history, then the manifest (main process only)."""
    if not trainer.is_world_process_zero():
        trainer.accelerator.wait_for_everyone()
        return {"stage": facts.stage, "process_index": trainer.args.process_index}
    adapter_dir = facts.out_dir / ADAPTER_DIR
    lineage = Lineage(
        kind=facts.lineage_kind,
        parent_path=portable_path(facts.model_dir, adapter_dir),
        parent_hash=weights_hash(facts.model_dir),
        quantization=facts.settings.quantization,
        dtype=facts.settings.dtype,
        eos_token=facts.eos.token,
        eos_token_id=facts.eos.token_id,
        trained_modules=facts.trained_modules,
        data_hashes={name: sha256_file(path) for name, path in sorted(facts.data.items())},
        config=facts.config(),
        versions=library_versions(),
        extra={"effective_batch": facts.batch.to_dict(), "seed": facts.seed, **facts.lineage_extra},
    )
    save_adapter(trainer.model, adapter_dir, lineage, facts.model_dir)
    history_path = atomic_write_json(facts.out_dir / "log_history.json", trainer.state.log_history)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    manifest = build_manifest(
        facts.stage,
        config=facts.config(),
        seed=facts.seed,
        inputs={"model": facts.model_dir, **facts.data},
        outputs={"adapter": adapter_dir, "log_history": history_path},
        counts=counts,
        extra={
            "effective_batch": facts.batch.to_dict(),
            "trained_modules": list(facts.trained_modules),
            "eos": facts.eos.to_dict(),
            "quantization": facts.settings.quantization,
            "parent_hash": lineage.parent_hash,
            "loss": {"first": losses[0], "last": losses[-1], "min": min(losses)} if losses else None,
            **extra,
        },
    )
    write_manifest(facts.out_dir, manifest)
    trainer.accelerator.wait_for_everyone()
    return manifest


def run_fingerprint(facts: TrainingFacts, stage_fingerprint: str | None = None) -> str:
    """One hash of what determines a training run: settings, sections, seed, effective batch, data
    and parent weights, plus the pipeline's fingerprint of the stage when it runs in a run directory
    (which also covers the upstream stages' settings: a rerun sft_data changes it even when
    ``train.jsonl`` comes out byte for byte the same)."""
    return config_hash(
        {
            "stage": facts.stage,
            "config": facts.config(),
            "seed": facts.seed,
            "batch": facts.batch.to_dict(),
            "data": {name: sha256_file(path) for name, path in sorted(facts.data.items())},
            "parent": weights_hash(facts.model_dir),
            "stage_fingerprint": stage_fingerprint,
        }
    )


def train(trainer, facts: TrainingFacts, *, resume: bool, stage_fingerprint: str | None = None) -> dict[str, Any]:
    """Train, resuming from this run's last checkpoint when there is one; timing and loss for the manifest.

    A last checkpoint that already reached ``max_steps`` (the run was killed after its final save,
    or its outputs went missing) is loaded and not trained further: handed to ``Trainer.train``,
    transformers 5.24 trains one step past ``max_steps`` whenever ``max_steps`` is not a whole
    number of epochs (checkpoint-6 of 6, at 4 steps an epoch, became 7 steps).
    """
    import time

    resumed_from = resume_point(Path(trainer.args.output_dir), run_fingerprint(facts, stage_fingerprint), resume=resume)
    if resumed_from is not None and load_finished_checkpoint(trainer, resumed_from):
        return {"resumed_from": str(resumed_from), "train_seconds": 0.0, "train_loss": None}
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resumed_from) if resumed_from else None)
    return {
        "resumed_from": str(resumed_from) if resumed_from else None,
        "train_seconds": round(time.perf_counter() - started, 3),
        "train_loss": result.training_loss,
    }


def resume_point(checkpoint_dir: Path, fingerprint: str, *, resume: bool) -> Path | None:
    """The checkpoint to resume from, if one was written by this same run.

    The fingerprint is recorded in ``checkpoint_dir/stage1_fingerprint.json``. Checkpoints left by a
    run with other settings, data, parent or upstream stages would resume the wrong training, so the
    main process removes them (and all of them when ``resume`` is off, as under ``--force``) before
    training, and logs that it did.
    """
    from accelerate import PartialState

    state = PartialState()
    marker = checkpoint_dir / FINGERPRINT_NAME
    recorded = read_json(marker).get("fingerprint") if marker.is_file() else None
    if state.is_main_process:
        if checkpoint_dir.exists() and (recorded != fingerprint or not resume):
            found = sorted(p.name for p in checkpoint_dir.glob("checkpoint-*"))
            if found:
                why = "resume is off (forced rerun)" if not resume else f"written under fingerprint {str(recorded)[:12]}, not {fingerprint[:12]}"
                log.warning("discarding %d checkpoint(s) in %s (%s): %s", len(found), checkpoint_dir, ", ".join(found), why)
            shutil.rmtree(checkpoint_dir)
        atomic_write_json(marker, {"fingerprint": fingerprint})
    state.wait_for_everyone()
    found = last_checkpoint(checkpoint_dir) if resume else None
    if found is not None:
        log.info("resuming from %s", found)
    return found


def load_finished_checkpoint(trainer, checkpoint: Path) -> bool:
    """Put a checkpoint that reached ``max_steps`` into ``trainer`` (LoRA weights and trainer state).

    Returns:
        False, touching nothing, when the checkpoint is short of ``max_steps`` (training goes on).

    Raises:
        TrainingError: the checkpoint's adapter does not fit the trainer's LoRA.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    if not 0 < state.max_steps <= state.global_step:
        return False
    loaded = set_peft_model_state_dict(trainer.model, load_file(str(checkpoint / ADAPTER_WEIGHTS)))
    if loaded.unexpected_keys:
        raise TrainingError(
            f"{checkpoint}: its adapter has weights the model's LoRA lacks ({', '.join(loaded.unexpected_keys[:3])}, ...); "
            f"delete {checkpoint.parent} and run again"
        )
    trainer.state = state
    log.info("%s is at max_steps (%d): finishing from it without training", checkpoint, state.max_steps)
    return True
