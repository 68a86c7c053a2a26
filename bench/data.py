"""Negatives and pairs at the speed of the data: the default pool through both stages in a fresh
process, and ``negatives`` on 10,000 and 100,000 SFT rows with the peak memory of each run.

    python -m bench.data                  # all rows (about a minute on 2 cores)
    python -m bench.data --examples 20000 # a smaller large run

Each measurement runs in a fresh process (``--worker``), so its peak RSS is its own and its time
includes the imports a user waits for; the stage functions are called directly (the CLI adds its
own imports). The large runs use the fixture pool cycled with a numbered suffix on each
instruction; only about 460 distinct answers exist there, so the off-topic kind runs out of
donors under the repeat cap and is reported below its floor (``negatives.on_kind_floor: warn``
here). CPU time is what a dedicated core would take; wall time on a shared machine measures the
other jobs too. Both are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
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


def worker(task: str, sft: Path, workdir: Path) -> dict[str, Any]:
    """One measurement in this process: ``negatives``, ``pairs`` (on ``negatives``' output), or
    ``both``; the stage times, this process's peak RSS, and whether torch was imported."""
    started, started_cpu = time.perf_counter(), time.process_time()
    from stage1.negatives import NegativeSettings, run_negatives
    from stage1.pairs.settings import PairSettings
    from stage1.pairs.stage import run_pairs

    figures: dict[str, Any] = {"import_s": time.perf_counter() - started}
    if task in ("negatives", "both"):
        manifest = run_negatives(NegativeSettings(on_kind_floor="warn"), sft_path=sft, out_dir=workdir / "negatives")
        figures["negatives"] = manifest["counts"]["negatives"]
    if task in ("pairs", "both"):
        manifest = run_pairs(PairSettings(on_kind_floor="warn"), sft_path=sft, negatives_path=workdir / "negatives" / "negatives.jsonl",
                             out_dir=workdir / "pairs", tokenizer_dir=workdir / "tokenizer", eval_items_path=EVAL_ITEMS)
        figures["pairs"] = manifest["counts"]["pairs"]
        figures["shortcuts"] = manifest["counts"]["train"]["shortcuts_by_kind"]
    return {**figures, "wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - started_cpu,
            "peak_rss_mib": peak_rss_mib(), "torch_imported": "torch" in sys.modules}


def peak_rss_mib() -> float:
    """This process's peak resident memory: ``VmHWM`` where Linux gives it (``ru_maxrss`` carries
    the parent's peak over fork and exec, so a child of a big parent would report the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(task: str, sft: Path, workdir: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.data", "--worker", task, "--sft", str(sft), "--workdir", str(workdir)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_wall_s": time.perf_counter() - started}


def shortcut_rows(where: str, shortcuts: dict[str, dict[str, Any]]) -> list[Row]:
    """Per kind of the train pairs: the content-blind baselines (``stage1.pairs.shortcuts``), 0.5 = chance."""
    rows = []
    for kind, report in shortcuts.items():
        rows.append(row("shortcuts", f"{where}, {kind} ({report['pairs']:,} pairs): length rule", report["length_rule"], "acc", "<= 0.65"))
        if report["classifier"] is not None:
            rows.append(row("shortcuts", f"{where}, {kind}: opening + length classifier", report["classifier"], "acc", "<= 0.65"))
    return rows


def _tokenizer(folder: Path) -> None:
    from stage1.hf.tiny import build_qwen2_tokenizer

    build_qwen2_tokenizer().save_pretrained(folder)


def run(count: int = 100_000) -> dict[str, Any]:
    """Measure, print the table, and return the figures (with the table rows under ``rows``)."""
    from stage1.io.atomic import atomic_write_jsonl

    small = max(1, count // 10)
    with tempfile.TemporaryDirectory() as tmp:
        work = {name: Path(tmp) / name for name in ("default", "small", "large")}
        for folder in work.values():
            folder.mkdir()
        _tokenizer(work["default"] / "tokenizer")
        _tokenizer(work["large"] / "tokenizer")
        default = _measure("both", POOL, work["default"])
        small_run = _measure("negatives", atomic_write_jsonl(work["small"] / "sft.jsonl", synthetic_rows(small)), work["small"])
        large_sft = atomic_write_jsonl(work["large"] / "sft.jsonl", synthetic_rows(count))
        large_run = _measure("negatives", large_sft, work["large"])
        pairs_run = _measure("pairs", large_sft, work["large"])
    ratio = large_run["peak_rss_mib"] / small_run["peak_rss_mib"]
    rows: list[Row] = [
        row("data", "negatives + pairs, default pool (460 rows), fresh process, wall", default["process_wall_s"], "s", "< 10"),
        row("data", "negatives + pairs, default pool, CPU (imports included)", default["cpu_s"], "s"),
        row("data", "negatives + pairs, default pool: torch imported (1 = yes)", float(default["torch_imported"]), "", "< 0.5"),
        row("data", f"negatives, {count:,} rows, CPU", large_run["cpu_s"], "s", "< 20" if count == 100_000 else ""),
        row("data", f"negatives, {count:,} rows, wall", large_run["wall_s"], "s"),
        row("data", f"negatives, {small:,} rows, peak RSS", small_run["peak_rss_mib"], "MiB"),
        row("data", f"negatives, {count:,} rows, peak RSS", large_run["peak_rss_mib"], "MiB"),
        row("data", f"negatives peak RSS ratio {count:,} / {small:,} rows", ratio, "x", "< 1.2"),
        row("data", f"pairs, {large_run['negatives']:,} negatives, CPU", pairs_run["cpu_s"], "s"),
        row("data", "pairs, peak RSS (holds every pair: not streamed)", pairs_run["peak_rss_mib"], "MiB"),
    ]
    rows += shortcut_rows("default pool", default["shortcuts"]) + shortcut_rows(f"{count:,} rows", pairs_run["shortcuts"])
    print_table(rows, "negatives and pairs at the speed of the data (one process per row, one core)")
    write_json(rows, RESULTS)
    results = {"examples": count, "default_pool": default, "negatives_small": small_run, "negatives_large": large_run,
               "pairs_large": pairs_run, "peak_rss_ratio": ratio}
    return {**results, "rows": [r.to_dict() for r in rows]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--worker", choices=("negatives", "pairs", "both"), help=argparse.SUPPRESS)
    parser.add_argument("--sft", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        print(json.dumps(worker(arguments.worker, arguments.sft, arguments.workdir)))
    else:
        run(arguments.examples)
