"""Evaluation speed on the tiny model: generation items/s at batch 1 and at the default batch, the
cost of one variant in process and in its own subprocess, and scoring + statistics at full size.

    python -m bench.evaluation
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.table import Row, print_table, row

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_ITEMS = ROOT / "fixtures" / "golden" / "items.jsonl"
NUM_ITEMS = 32


def write_items(path: Path, count: int = NUM_ITEMS) -> Path:
    """``count`` items cycled from the golden items, with unique ids and instructions."""
    base = [json.loads(line) for line in GOLDEN_ITEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for index in range(count):
        item = dict(base[index % len(base)])
        item["id"] = f"b{index:03d}"
        item["instruction"] = f"{item['instruction']} (variant {index})"
        rows.append(json.dumps(item))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def generation_items_per_second(model_dir: Path, items_path: Path, batch_size: int, max_new_tokens: int) -> float:
    from stage1.eval.runner import generate_responses, load_variant
    from stage1.eval.settings import VariantSpec
    from stage1.hf.models import free_model
    from stage1.io.records import read_eval_items

    spec = VariantSpec("base", model_dir)
    items = read_eval_items(items_path)
    model, tokenizer = load_variant(spec, dtype="float32", device="auto", parent_hash=None)
    settings = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "seed": 0}
    generate_responses(spec, items[:2], model, tokenizer, settings)  # warm-up: stop-string tables, allocator
    started = time.perf_counter()
    generate_responses(spec, items, model, tokenizer, settings)
    seconds = time.perf_counter() - started
    free_model(model)
    return len(items) / seconds


def one_variant_seconds(model_dir: Path, items_path: Path, out_dir: Path, in_process: bool) -> float:
    from stage1.eval.stage import EvalSettings, VariantSpec, run_evaluate

    settings = EvalSettings(variants=("base",), limit=8, bootstrap_samples=200)
    started = time.perf_counter()
    run_evaluate(settings, variants=[VariantSpec("base", model_dir)], items_path=items_path, out_dir=out_dir, in_process=in_process)
    return time.perf_counter() - started


def summary_seconds(num_items: int = 300, samples: int = 1000) -> float:
    """Scoring and statistics alone: 300 items, five variants, the default comparisons and bootstrap."""
    import random

    from stage1.core.eval_items import EvalItem, EvalResponse
    from stage1.eval.settings import VARIANT_NAMES, EvalSettings
    from stage1.eval.summary import summarise

    rng = random.Random(0)
    items = [EvalItem(f"s{i}", f"Question {i}?", reference="Paris", topic_keywords=("France",)) for i in range(num_items)]
    answers = [" Paris.\nEND", " London.\nEND", " Paris is the capital of France, of course", ""]
    responses = {}
    for variant in VARIANT_NAMES:
        responses[variant] = {}
        for item in items:
            text = rng.choice(answers)
            stop = "end" if text.endswith("END") else "max_tokens"
            answer = text.replace("\nEND", "").strip()
            responses[variant][item.id] = EvalResponse(item.id, variant, "p", text, answer, stop, False, 5)
    settings = EvalSettings(bootstrap_samples=samples)
    started = time.perf_counter()
    summarise(items, responses, pairs=settings.comparison_pairs, confidence=0.95, q=0.05, bootstrap_samples=samples, seed=0,
              min_category_items=30)
    return time.perf_counter() - started


def run() -> dict[str, Any]:
    """Measure everything; returns ``{metric: value}`` and the table rows under ``rows``."""
    from stage1.eval.settings import EvalSettings
    from stage1.hf.tiny import build_tiny_qwen

    defaults = EvalSettings()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir = build_tiny_qwen(folder / "model", seed=0)
        items_path = write_items(folder / "items.jsonl")
        results = {
            "items_per_s_batch_1": generation_items_per_second(model_dir, items_path, 1, defaults.max_new_tokens),
            f"items_per_s_batch_{defaults.batch_size}": generation_items_per_second(
                model_dir, items_path, defaults.batch_size, defaults.max_new_tokens
            ),
            "one_variant_in_process_s": one_variant_seconds(model_dir, items_path, folder / "eval-a", in_process=True),
            "one_variant_subprocess_s": one_variant_seconds(model_dir, items_path, folder / "eval-b", in_process=False),
            "summary_300_items_5_variants_s": summary_seconds(),
        }
    return {**results, "rows": [r.to_dict() for r in rows(results)]}


def rows(results: dict[str, float]) -> list[Row]:
    units = {"items_per_s": "items/s", "_s": "s"}
    table = []
    for metric, value in results.items():
        unit = next(u for key, u in units.items() if key in metric)
        target = "< 10" if metric.startswith("summary") else ""
        table.append(row("evaluation", metric, value, unit, target))
    return table


if __name__ == "__main__":
    from stage1.eval.settings import EvalSettings

    measured = run()
    print_table([Row(**r) for r in measured["rows"]],
                f"evaluation on the tiny model ({NUM_ITEMS} items, max_new_tokens={EvalSettings().max_new_tokens})")
