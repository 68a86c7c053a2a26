"""The commands that load no model, at the size of a sweep: ``score`` and ``check-leakage`` on 10,000
and 100,000 rows, each in a fresh process as a user runs it (imports included), with its peak RSS.

    python -m bench.commands

``score`` reads responses to the 1,054 items of ``stage1/pools/eval/items_large.jsonl`` (a sweep:
many checkpoints and variants, each answering every item); ``check-leakage`` reads training rows
(instructions of the large SFT pool, renumbered and reworded so none repeats) against the same
items. Peak RSS at 10k and 100k rows shows whether memory grows with the rows.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.table import Row, print_table, row

ROOT = Path(__file__).resolve().parent.parent
ITEMS = ROOT / "stage1" / "pools" / "eval" / "items_large.jsonl"
TRAIN_POOL = ROOT / "stage1" / "pools" / "sft" / "instructions_large.jsonl"
SIZES = (10_000, 100_000)
# Runs one command line in this process and prints its wall seconds, CPU seconds and peak RSS (MiB).
PROBE = """
import resource, sys, time
started, cpu = time.perf_counter(), time.process_time()
from stage1.cli import main
status = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("PROBE", status, time.perf_counter() - started, time.process_time() - cpu, peak)
"""


def _items() -> list[dict]:
    return [json.loads(line) for line in ITEMS.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_responses(path: Path, rows: int, seed: int = 0) -> int:
    """``rows`` responses (rounded down to whole variants): right, wrong, unfinished and runaway answers."""
    items, rng = _items(), random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for variant in range(rows // len(items)):
            for item in items:
                right = item.get("reference") or "Here is a short answer about " + " ".join(item.get("topic_keywords") or ["it"])
                text = rng.choice([f" {right}.\nEND", f" {right}, I think.\nEND", " I am not sure.\nEND",
                                   f" {right} and more words that go on", f" {right}.\nEND\nInstruction: next"])
                out.write(json.dumps({"item_id": item["id"], "variant": f"ckpt{variant:03d}", "response": text}) + "\n")
    return rows // len(items) * len(items)


def write_training_rows(path: Path, rows: int) -> int:
    """``rows`` instruction rows cycled from the large SFT pool, each made distinct by a number."""
    pool = [json.loads(line) for line in TRAIN_POOL.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open("w", encoding="utf-8") as out:
        for index in range(rows):
            base = pool[index % len(pool)]
            out.write(json.dumps({"id": f"t{index}", "instruction": f"{base['instruction']} (case {index // len(pool)})",
                                  "response": base["response"]}) + "\n")
    return rows


def probe(argv: list[str]) -> dict[str, float]:
    """Wall and CPU seconds and peak RSS of ``stage1 ARGV`` in a fresh process on one core."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((text for text in done.stdout.splitlines() if text.startswith("PROBE ")), None)
    if line is None:
        raise RuntimeError(f"stage1 {' '.join(argv)} failed: {done.stderr[-2000:]}")
    status, wall, cpu, peak = line.split()[1:]
    return {"status": int(status), "seconds": float(wall), "cpu_seconds": float(cpu), "peak_rss_mib": float(peak)}


def _rows(label: str, command: str, count: int, measured: dict[str, float], floor: int | None) -> list[Row]:
    """Rows/s per CPU second (the command is single-threaded: its speed on one core of its own, the
    target's terms) beside rows/s of wall time (which a busy machine lowers), and the peak RSS."""
    target = f">= {floor}" if floor else ""
    return [
        row("commands", f"{command} rows/s, one core ({label})", count / measured["cpu_seconds"], "rows/s", target,
            note=f"{measured['cpu_seconds']:.1f} s CPU"),
        row("commands", f"{command} rows/s, wall ({label})", count / measured["seconds"], "rows/s",
            note=f"{measured['seconds']:.1f} s wall, load average {os.getloadavg()[0]:.1f}"),
        row("commands", f"{command} peak RSS ({label})", measured["peak_rss_mib"], "MiB"),
    ]


def run(sizes: tuple[int, ...] = SIZES) -> list[Row]:
    rows: list[Row] = []
    peaks: dict[str, list[float]] = {"score": [], "check-leakage": []}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for size in sizes:
            responses = work / f"responses{size}.jsonl"
            count = write_responses(responses, size)
            score = probe(["score", "--in", f"items={ITEMS}", "--in", f"responses={responses}", "--out", str(work / f"scored{size}")])
            train = work / f"train{size}.jsonl"
            trained = write_training_rows(train, size)
            leakage = probe(["check-leakage", "--in", f"train={train}", "--in", f"eval_items={ITEMS}"])
            label = f"{size // 1000}k rows"
            rows += _rows(label, "score", count, score, 5000 if size >= 100_000 else None)
            rows += _rows(f"{label} vs 1,054 items", "check-leakage", trained, leakage, 10000 if size >= 100_000 else None)
            peaks["score"].append(score["peak_rss_mib"])
            peaks["check-leakage"].append(leakage["peak_rss_mib"])
    if len(sizes) > 1:  # side by side: how memory grows with ten times the rows
        for name, values in peaks.items():
            rows.append(row("commands", f"{name} peak RSS {sizes[-1] // 1000}k / {sizes[0] // 1000}k rows", values[-1] / values[0], "x",
                            note="1.0 is flat (streamed)"))
    return rows


if __name__ == "__main__":
    print_table(run(), "commands that load no model")
