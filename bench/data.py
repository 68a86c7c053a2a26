"""Negatives + pairs at scale: 100,000 SFT examples through both stages on one core, and the memory
of the streaming negatives core as the number of examples grows.

    python -m bench.data                # 100,000 examples (target: both stages under 20 s)
    python -m bench.data --examples 20000

The examples are the fixture pool cycled with a numbered suffix on each instruction, so every
instruction is distinct and every kind of negative applies somewhere. Timings cover the stage
functions themselves (reading, validating, building, the leakage gate, writing, the manifest);
building the tokenizer is outside them. The stages run in one thread, so the process's CPU time is
what they take on one dedicated core; the target is checked against it, because wall-clock time
on a machine shared with other jobs measures the other jobs too. Both are printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.table import Row, print_table, row, write_json

ROOT = Path(__file__).resolve().parent.parent
POOL = ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"
EVAL_ITEMS = ROOT / "stage1" / "pools" / "eval" / "items.jsonl"
RESULTS = ROOT / "bench" / "results" / "data.json"


def synthetic_rows(count: int) -> Iterator[dict]:
    """``count`` SFT rows: the fixture pool cycled, each instruction made distinct by a number."""
    pool = [json.loads(line) for line in POOL.read_text(encoding="utf-8").splitlines() if line.strip()]
    for index in range(count):
        base = pool[index % len(pool)]
        yield {
            "id": f"x{index}",
            "instruction": f"{base['instruction']} (item {index})",
            "response": base["response"],
            "category": base["category"],
        }


def stage_seconds(count: int, workdir: Path, tokenizer_dir: Path) -> dict[str, float]:
    """Wall time of ``run_negatives`` and ``run_pairs`` on ``count`` examples written to a file."""
    from stage1.io.atomic import atomic_write_jsonl
    from stage1.negatives import NegativeSettings, run_negatives
    from stage1.pairs.settings import PairSettings
    from stage1.pairs.stage import run_pairs

    sft = atomic_write_jsonl(workdir / "sft.jsonl", synthetic_rows(count))
    gc.collect()
    started, started_cpu = time.perf_counter(), time.process_time()
    negatives = run_negatives(NegativeSettings(), sft_path=sft, out_dir=workdir / "negatives")
    middle, middle_cpu = time.perf_counter(), time.process_time()
    pairs = run_pairs(
        PairSettings(),
        sft_path=sft,
        negatives_path=workdir / "negatives" / "negatives.jsonl",
        out_dir=workdir / "pairs",
        tokenizer_dir=tokenizer_dir,
        eval_items_path=EVAL_ITEMS,
    )
    finished, finished_cpu = time.perf_counter(), time.process_time()
    return {
        "negatives_s": middle - started,
        "pairs_s": finished - middle,
        "negatives_cpu_s": middle_cpu - started_cpu,
        "pairs_cpu_s": finished_cpu - middle_cpu,
        "negatives": negatives["counts"]["negatives"],
        "pairs": pairs["counts"]["pairs"],
    }


def streaming_peak_mib(count: int) -> float:
    """Peak traced memory of the negatives core consuming a lazy stream of ``count`` examples."""
    from stage1.core.records import SFTExample
    from stage1.negatives import DonorPool, NegativeSettings, generate_negatives

    settings = NegativeSettings()
    donors = DonorPool.from_examples((SFTExample(**r) for r in synthetic_rows(5_000)), settings.donor_pool_size, 0)
    gc.collect()
    tracemalloc.start()
    stream, counts = generate_negatives((SFTExample(**r) for r in synthetic_rows(count)), settings, donors)
    for _ in stream:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def run(count: int = 100_000) -> dict[str, Any]:
    """Measure, print the table, and return the figures (with the table rows under ``rows``)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from stage1.hf.tiny import build_qwen2_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        build_qwen2_tokenizer().save_pretrained(workdir / "tokenizer")
        timings = stage_seconds(count, workdir, workdir / "tokenizer")
    sizes = (count // 10, count // 2, count)
    peaks = {size: streaming_peak_mib(size) for size in sizes}
    total = timings["negatives_s"] + timings["pairs_s"]
    total_cpu = timings["negatives_cpu_s"] + timings["pairs_cpu_s"]
    results = {
        "examples": count,
        **timings,
        "total_s": total,
        "total_cpu_s": total_cpu,
        **{f"negatives_stream_peak_mib_{size}": peak for size, peak in peaks.items()},
        "peak_growth_ratio": peaks[sizes[-1]] / peaks[sizes[0]],
    }
    rows: list[Row] = [
        row("data", f"run_negatives, {count:,} examples", timings["negatives_s"], "s"),
        row("data", f"run_pairs, {timings['negatives']:,} negatives", timings["pairs_s"], "s"),
        row("data", "negatives + pairs, wall clock", total, "s"),
        row("data", "negatives + pairs, CPU time of this process", total_cpu, "s", "< 20" if count == 100_000 else ""),
        *(row("data", f"negatives core peak memory, {size:,} streamed", peak, "MiB") for size, peak in peaks.items()),
        row("data", f"peak memory ratio {sizes[-1]:,} / {sizes[0]:,} examples", results["peak_growth_ratio"], "x", "< 1.5"),
    ]
    print_table(rows, "negatives and pairs at scale (one process, one core)")
    write_json(rows, RESULTS)
    return {**results, "rows": [r.to_dict() for r in rows]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    run(parser.parse_args().examples)
