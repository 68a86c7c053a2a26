"""The memory plan (``stage1 plan``) against what the GPU really holds, for the 32B preset.

    python -m bench.memplan                      # the qwen2.5-32b preset
    python -m bench.memplan --config tiny        # the same measurement on any preset

Needs CUDA and the model folder the preset names (``model.path``); otherwise its rows say why
nothing was measured. Each measurement runs in its own spawned process, so one stage's allocations
cannot inflate the next:

- eval: the model loaded as evaluation loads it (``training.quantization``, ``eval.dtype``), then,
  when the plan has a KV cache for it (transformers generation), one batch of ``eval.batch_size``
  prompts of about 512 tokens generating up to ``eval.max_new_tokens`` through
  ``TransformersBackend``; with a vLLM plan only the weights are measured, against the plan's weights;
- sft: one optimizer step of stage1's own SFT stage (TRL, LoRA, activation checkpointing as in
  the preset, accumulation set to 1: it does not change the peak) on rows of ``sft.max_length``.

Measured = the peak the CUDA caching allocator reserved; compared with the plan's total minus its
fixed CUDA-context allowance (the allocator never sees the context). Target: measured / plan
<= 1.0, i.e. the plan does not underestimate.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.table import Row, print_table, row, unmeasured

ROOT = Path(__file__).resolve().parent.parent
PROMPT_WORDS = 500  # " alpha" is one token: prompts of about 512 tokens, as the plan assumes
GIB = 1024**3


def _reserved_gib() -> float:
    import torch

    torch.cuda.synchronize()
    return torch.cuda.max_memory_reserved() / GIB


def measure_eval(config_name: str, generate: bool) -> dict[str, float]:
    """Peak reserved memory (GiB) of loading the model and (``generate``) one evaluation batch."""
    import torch

    from stage1.core.format import render_prompt
    from stage1.core.generation import GenerationSettings
    from stage1.hf.generation import TransformersBackend
    from stage1.hf.models import load_model, load_tokenizer
    from stage1.stages.config import load_config

    config = load_config(config_name)
    evaluation, training = config.eval, config.training
    torch.cuda.reset_peak_memory_stats()
    model = load_model(config.model.path, quantization=training.quantization, dtype=evaluation.dtype, device_map={"": 0}).eval()
    loaded = _reserved_gib()
    if generate:
        prompts = [render_prompt(f"Repeat after me ({i}):" + " alpha" * PROMPT_WORDS) for i in range(evaluation.batch_size)]
        settings = GenerationSettings(max_new_tokens=evaluation.max_new_tokens, batch_size=evaluation.batch_size)
        TransformersBackend(model, load_tokenizer(config.model.path)).generate(prompts, settings)
    return {"after_load_gib": loaded, "peak_gib": _reserved_gib()}


def measure_sft_step(config_name: str, work: str) -> dict[str, float]:
    """Peak reserved memory (GiB) of one SFT optimizer step through ``run_train_sft``."""
    import torch

    from stage1.stages.config import load_config
    from stage1.train.sft import run_train_sft

    config = load_config(config_name)
    sft = dict(config.sft)
    batch = int(sft.get("per_device_train_batch_size", 8))
    words = max(8, int(sft.get("max_length") or 1024) - 48)  # fills max_length without an overlong row
    rows = Path(work) / "sft.jsonl"
    rows.write_text("".join(
        json.dumps({"id": f"m{i}", "instruction": f"Write the word alpha many times ({i}).", "response": ("alpha " * words).strip()}) + "\n"
        for i in range(batch)
    ))
    torch.cuda.reset_peak_memory_stats()
    run_train_sft(
        replace(config.training, target_effective_batch=batch),
        model_dir=config.model.path, train_path=rows, out_dir=Path(work) / "sft",
        sft_args={**sft, "max_steps": 1, "gradient_accumulation_steps": 1, "save_steps": 10**6, "logging_steps": 1},
        lora_args=dict(config.lora),
    )
    return {"peak_gib": _reserved_gib()}


def in_fresh_process(function, *args) -> dict[str, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def why_not_measured(config_name: str) -> str | None:
    """None when this machine can measure the preset; otherwise the reason, for the table."""
    import torch

    from stage1.stages.config import load_config

    if not torch.cuda.is_available():
        return "not measured (no GPU)"
    path = load_config(config_name).model.path
    if not path or not (Path(path) / "config.json").is_file():
        return f"not measured (no model at {path})"
    return None


def run(config_name: str = "qwen2.5-32b") -> dict[str, Any]:
    """Measure (when possible), print the table, and return the figures with the rows under ``rows``."""
    from stage1.hf.memory_estimate import CUDA_CONTEXT_GIB
    from stage1.hf.memplan import plan_for_config
    from stage1.stages.config import load_config

    plan = plan_for_config(load_config(config_name))
    planned = {name: plan.stage(name).total_gib - CUDA_CONTEXT_GIB for name in ("eval", "sft")}
    eval_generates = plan.stage("eval").problem_setting == "" and "logits" in plan.stage("eval").parts
    if not eval_generates:  # vLLM: the plan's total is the engine's reservation; the measurement loads the weights only
        planned["eval"] = plan.stage("eval").parts["weights"]
    reason = why_not_measured(config_name)
    results: dict[str, Any] = {"config": config_name, "planned_gib": planned, "measured_gib": None, "reason": reason}
    rows: list[Row] = [row("memplan", f"{config_name} {name}: planned peak (allocator)", gib, "GiB") for name, gib in planned.items()]
    if reason is not None:
        rows += [unmeasured("memplan", f"{config_name} {name}: measured / planned", "x", reason, "<= 1.0") for name in planned]
    else:
        with tempfile.TemporaryDirectory() as work:
            measured = {"eval": in_fresh_process(measure_eval, config_name, eval_generates),
                        "sft": in_fresh_process(measure_sft_step, config_name, work)}
        results["measured_gib"] = measured
        rows.append(row("memplan", f"{config_name} weights after load", measured["eval"]["after_load_gib"], "GiB",
                        note=f"planned {plan.stage('eval').parts['weights']:.2f} GiB"))
        for name in planned:
            rows.append(row("memplan", f"{config_name} {name}: measured peak reserved", measured[name]["peak_gib"], "GiB"))
            rows.append(row("memplan", f"{config_name} {name}: measured / planned", measured[name]["peak_gib"] / planned[name], "x", "<= 1.0"))
    print_table(rows, f"memory plan against the GPU ({config_name})")
    return {**results, "rows": [r.to_dict() for r in rows]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="qwen2.5-32b", help="a preset name or YAML file")
    run(parser.parse_args().config)
