"""Generation throughput on the tiny model: generated tokens/s at batch 1 and at batch 16, same prompts.

    python -m bench.generation
    python -m bench.generation --prompts 64 --max-new-tokens 32 --threads 1

The prompts are few-shot SFT-data prompts built from the fixture pools (two exemplars and one
instruction, about 90 tokens), greedy, through ``TransformersBackend`` exactly as the sft_data
stage runs it. The random tiny model never writes END, so every prompt runs to ``max_new_tokens``
at both batch sizes and the token counts are equal. One warm-up call builds the stop-string
tables before timing. Target: batch 16 at least 5x batch 1.

It also times the part of a decoding step that grows with the batch whatever the code around it
does: the LM-head matmul over the 151,936-row vocabulary and the greedy argmax, on the model's own
weights. ``16 x (batch-1 time per token) / (head + argmax at batch 16)`` is the most batch 16 could
gain over batch 1 if every other cost of a batch-16 step were free: the ceiling row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.table import Row, print_table, row, write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "generation.json"


def fewshot_prompts(count: int) -> list[str]:
    from stage1.core.generation import build_fewshot_prompt
    from stage1.core.records import SFTExample
    from stage1.io.records import read_records

    pool = read_records(ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl", SFTExample)
    shots = [(e.instruction, e.response) for e in read_records(ROOT / "stage1" / "pools" / "sft" / "exemplars.jsonl", SFTExample)]
    return [build_fewshot_prompt(shots[i % len(shots) : i % len(shots) + 2], pool[i * 7 % len(pool)].instruction) for i in range(count)]


def tokens_per_second(backend, prompts: list[str], batch_size: int, max_new_tokens: int) -> tuple[float, int]:
    from stage1.core.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    started = time.perf_counter()
    generations = backend.generate(prompts, settings)
    seconds = time.perf_counter() - started
    tokens = sum(g.num_tokens for g in generations)
    return tokens / seconds, tokens


def head_and_argmax_ms(model, batch_size: int, repeats: int = 30) -> float:
    """Median milliseconds of one decoding step's LM head and greedy argmax at ``batch_size``."""
    import statistics

    import torch

    hidden = torch.randn(batch_size, 1, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        model.lm_head(hidden).argmax(-1)  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            model.lm_head(hidden).argmax(-1)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(prompts: int = 32, max_new_tokens: int = 32, threads: int | None = None) -> dict[str, float]:
    """Measure, print the table, and return the figures (with the table rows under ``rows``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stage1.core.generation import GenerationSettings
    from stage1.hf.generation import TransformersBackend
    from stage1.hf.tiny import build_tiny_qwen

    if threads is not None:
        torch.set_num_threads(threads)
    texts = fewshot_prompts(prompts)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_qwen(Path(tmp) / "tiny", seed=0)
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        backend = TransformersBackend(model, AutoTokenizer.from_pretrained(model_dir))
        backend.generate(texts[:2], GenerationSettings(max_new_tokens=4, batch_size=2))  # warm-up
        single, single_tokens = tokens_per_second(backend, texts, 1, max_new_tokens)
        batched, batched_tokens = tokens_per_second(backend, texts, 16, max_new_tokens)
        head_1, head_16 = head_and_argmax_ms(model, 1), head_and_argmax_ms(model, 16)
    ceiling = 16 * (1000 / single) / head_16
    prompt_tokens = sum(len(ids) for ids in backend.encode_prompts(texts)) / len(texts)
    results = {
        "prompts": prompts,
        "max_new_tokens": max_new_tokens,
        "torch_threads": torch.get_num_threads(),
        "mean_prompt_tokens": prompt_tokens,
        "tokens_per_s_batch1": single,
        "tokens_per_s_batch16": batched,
        "generated_tokens_batch1": single_tokens,
        "generated_tokens_batch16": batched_tokens,
        "speedup": batched / single,
        "head_argmax_ms_batch1": head_1,
        "head_argmax_ms_batch16": head_16,
        "speedup_ceiling": ceiling,
    }
    rows: list[Row] = [
        row("generation", f"batch 1, {prompts} prompts x {max_new_tokens} tokens", single, "tokens/s"),
        row("generation", f"batch 16, same prompts ({batched_tokens} tokens)", batched, "tokens/s"),
        row("generation", "batch 16 / batch 1", batched / single, "x", ">= 5"),
        row("generation", "LM head + argmax per step, batch 1", head_1, "ms"),
        row("generation", "LM head + argmax per step, batch 16", head_16, "ms"),
        row("generation", "ceiling: 16 x batch-1 ms/token / batch-16 head", ceiling, "x", note="if all else were free"),
        row("generation", "torch threads", torch.get_num_threads(), ""),
        row("generation", "mean prompt length", prompt_tokens, "tokens"),
    ]
    print_table(rows, "tiny-model generation throughput (TransformersBackend, greedy, float32)")
    write_json(rows, RESULTS)
    return {**results, "rows": [r.to_dict() for r in rows]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    run(args.prompts, args.max_new_tokens, args.threads)
