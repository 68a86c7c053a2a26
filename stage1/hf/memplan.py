"""The memory plan of a run: every stage's peak GPU memory, estimated from a resolved config before
anything loads (the ``stage1 plan`` command and the check a stage makes before a vLLM engine starts).

The arithmetic is ``stage1.hf.memory_estimate`` (its docstring names every part of a peak) on the shape
of ``stage1.hf.model_shape``; this module reads the workloads off the config's sections.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from stage1.hf.lora import LORA_DEFAULTS
from stage1.hf.memory_estimate import (
    GIB,
    GenerationWorkload,
    MemoryPlan,
    StagePlan,
    Workload,
    check_vllm_fits,
    plan_memory,
    stage_fits,
)
from stage1.hf.model_shape import ModelShape, read_architecture
from stage1.hf.tiny import TinyQwenShape
from stage1.hf.vllm_backend import VLLMSettings, vllm_max_model_len

PLANNED_PROMPT_TOKENS = 512  # prompt length assumed by `plan` when vllm.max_model_len is null (the real prompts are counted at start-up)


def check_engine_fits(model_dir: str | Path, quantization: str, dtype: str, vllm: Any, max_model_len: int,
                      lora_rank: int | None, section: str, gpu_gib: float | None = None) -> StagePlan:
    """``check_vllm_fits`` for a model folder and the GPU at hand, before a vLLM engine starts.

    Args:
        vllm: the stage's ``VLLMSettings``.
        gpu_gib: memory of one GPU; by default CUDA device 0's.

    Raises:
        ConfigError: the engine's KV cache would not hold one sequence of ``max_model_len``.
    """
    if gpu_gib is None:
        import torch

        gpu_gib = torch.cuda.get_device_properties(0).total_memory / GIB
    work = GenerationWorkload(
        stage=section, quantization=quantization, dtype=dtype,
        total_tokens=max_model_len, backend="vllm", gpu_memory_utilization=vllm.gpu_memory_utilization,
        max_num_seqs=vllm.max_num_seqs, tensor_parallel_size=vllm.tensor_parallel_size, lora_rank=lora_rank, section=section,
    )
    return check_vllm_fits(read_architecture(Path(model_dir) / "config.json"), work, gpu_gib)


def workload_from_sections(training, section: dict[str, Any], lora: dict[str, Any]) -> Workload:
    """A Workload from the ``training:`` settings and one TRL section, with TRL's GPU defaults."""
    targets = tuple(lora.get("target_modules") or LORA_DEFAULTS["target_modules"])
    return Workload(
        quantization=training.quantization,
        dtype="bfloat16" if training.dtype in ("auto", "float32") and training.quantization != "none" else training.dtype,
        lora_r=int(lora.get("r", LORA_DEFAULTS["r"])),
        lora_targets=targets,
        batch_size=int(section.get("per_device_train_batch_size", 8)),
        max_length=int(section.get("max_length") or 1024),
        gradient_checkpointing=bool(section.get("activation_checkpointing", section.get("gradient_checkpointing", True))),
    )


def shape_for_config(config) -> ModelShape:
    """The architecture the plan is for: ``model.architecture``, else the model folder's config.json, else the tiny model."""
    if getattr(config.model, "architecture", None):
        return read_architecture(config.model.architecture)
    if getattr(config.model, "path", None) and (Path(config.model.path) / "config.json").is_file():
        return read_architecture(Path(config.model.path) / "config.json")
    return ModelShape.from_config({**asdict(TinyQwenShape()), "tie_word_embeddings": True})


def _generation_workload(stage: str, quantization: str, dtype: str, batch_size: int, max_new_tokens: int, backend: str,
                         vllm: Any, lora_rank: int | None = None) -> GenerationWorkload:
    """One generation stage; with vLLM, sized by the stage's ``vllm`` settings."""
    total = max_new_tokens + PLANNED_PROMPT_TOKENS
    sizing: dict[str, Any] = {}
    if backend == "vllm":
        vllm = vllm or VLLMSettings()
        total = vllm_max_model_len(PLANNED_PROMPT_TOKENS, max_new_tokens) if vllm.max_model_len is None else vllm.max_model_len
        sizing = {"gpu_memory_utilization": vllm.gpu_memory_utilization, "max_num_seqs": vllm.max_num_seqs,
                  "tensor_parallel_size": vllm.tensor_parallel_size, "lora_rank": lora_rank}
    return GenerationWorkload(stage=stage, quantization=quantization, dtype=dtype, batch_size=batch_size, total_tokens=total,
                              backend=backend, section=stage, **sizing)


def generation_workloads(config, training) -> tuple[GenerationWorkload, ...]:
    """SFT-data generation (when the base writes the responses) and evaluation, from their sections.

    With vLLM and ``vllm.max_model_len: null`` the plan assumes prompts of ``PLANNED_PROMPT_TOKENS``;
    the stage counts its real prompts and checks the same arithmetic before the engine starts.
    """
    works = []
    run_backend = getattr(getattr(config, "run", None), "generation_backend", "transformers")
    sft_data = getattr(config, "sft_data", None)
    if sft_data is not None and getattr(sft_data, "source", "file") == "model":
        decoding = getattr(sft_data, "generation", None)
        works.append(_generation_workload(
            "sft_data", getattr(sft_data, "quantization", "none"), getattr(sft_data, "dtype", "bfloat16"),
            int(getattr(decoding, "batch_size", 8)), int(getattr(decoding, "max_new_tokens", 256)), run_backend,
            getattr(sft_data, "vllm", None),
        ))
    evaluation = getattr(config, "eval", None)
    lora_rank = getattr(config, "lora", {}).get("r") if isinstance(getattr(config, "lora", None), dict) else None
    works.append(_generation_workload(
        "eval", training.quantization, getattr(evaluation, "dtype", training.dtype), int(getattr(evaluation, "batch_size", 8) or 8),
        int(getattr(evaluation, "max_new_tokens", 256) or 256), getattr(evaluation, "backend", None) or run_backend,
        getattr(evaluation, "vllm", None), int(lora_rank) if lora_rank else None,
    ))
    return tuple(works)


def plan_for_config(config, gpu_gib: float | None = None) -> MemoryPlan:
    """The plan for a resolved PipelineConfig (the ``stage1 plan`` command)."""
    training = config.training
    return plan_memory(
        shape_for_config(config),
        sft=workload_from_sections(training, dict(config.sft), dict(config.lora)),
        dpo=workload_from_sections(training, dict(config.dpo), dict(config.lora)),
        merge_dtype=training.merge_dtype,
        merge_device=training.merge_device,
        generation=generation_workloads(config, training),
        gpu_gib=gpu_gib if gpu_gib is not None else training.gpu_memory_gib,
        handoff=getattr(training, "sft_handoff", "merge"),
    )


def plan_table(plan: MemoryPlan):
    """A rich Table of the plan, one row per stage (rich is imported here, for the CLI)."""
    from rich.table import Table

    table = Table(title=f"peak memory per stage ({plan.parameters / 1e9:.2f}B parameters, GPU {plan.gpu_gib:.0f} GiB)")
    for column in ("stage", "device", "parts (GiB)", "total GiB", "fits"):
        table.add_column(column)
    for stage in plan.stages:
        parts = ", ".join(f"{name} {value:.2f}" for name, value in stage.parts.items())
        if stage.notes:
            parts += "\n" + "\n".join(stage.notes)
        fits = "n/a" if stage.device != "gpu" else ("yes" if stage_fits(stage, plan.gpu_gib) else "[red]no[/]")
        table.add_row(stage.stage, stage.device, parts, f"{stage.total_gib:.1f}", fits)
    return table
