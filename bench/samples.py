"""The samples stage on the tiny model: generated tokens/s at the default batch, whole stage.

    python -m bench.samples
    python -m bench.samples --instructions 32

``run_samples`` with the default ``negatives.policy`` settings (k, batch, temperature, length) on
the first N fixture instructions, through ``TransformersBackend`` as ``stage1 run`` calls it; the
time covers the whole stage (model load, sampling, scoring, writing). The random tiny model never
writes END, so every sample runs to ``max_new_tokens``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.table import Row, print_table, row, write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "samples.json"


def run(instructions: int = 16) -> dict:
    """Measure, print the table, and return the figures (with the table rows under ``rows``)."""
    from stage1.hf.tiny import build_tiny_qwen
    from stage1.samples.settings import PolicySettings
    from stage1.samples.stage import SAMPLES_FILE, run_samples

    settings = PolicySettings()
    lines = (ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl").read_text().splitlines()[:instructions]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_qwen(Path(tmp) / "tiny", seed=0)
        sft = Path(tmp) / "train.jsonl"
        sft.write_text("\n".join(lines) + "\n")
        started = time.perf_counter()
        manifest = run_samples(settings, sft_path=sft, model_dir=model_dir, out_dir=Path(tmp) / "samples")
        seconds = time.perf_counter() - started
        samples = [s for line in (Path(tmp) / "samples" / SAMPLES_FILE).read_text().splitlines() for s in json.loads(line)["samples"]]
    tokens = sum(sample["num_tokens"] for sample in samples)
    rows: list[Row] = [
        row("samples", f"stage, {instructions} instructions x k={settings.k}, batch {settings.batch_size}", tokens / seconds, "tokens/s"),
        row("samples", "stage wall time", seconds, "s"),
        row("samples", "generated tokens", tokens, "tokens"),
        row("samples", "policy pairs chosen", manifest["counts"]["pairs"], "pairs"),
    ]
    print_table(rows, "tiny-model samples stage (TransformersBackend, sampling, float32)")
    write_json(rows, RESULTS)
    return {"tokens": tokens, "seconds": seconds, "rows": [r.to_dict() for r in rows]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=16)
    run(parser.parse_args().instructions)
