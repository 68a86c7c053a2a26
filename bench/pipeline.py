"""Whole tiny `run`: wall time and peak memory of the pipeline, and each stage's time.

    python -m bench.pipeline
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.table import Row, print_table, row

ROOT = Path(__file__).resolve().parent.parent


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        # The tiny default runs on the organism: have it in the cache first (built there the first
        # time; `python -m bench.organism` times a build), so the row times the pipeline alone.
        from stage1.organism.build import build_organism

        build_organism(Path(tmp) / "organism")
        run_dir = Path(tmp) / "run"
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--run-dir", str(run_dir)], cwd=ROOT, check=True)
        wall = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        timings = json.loads((run_dir / "timings.json").read_text())
        peak_mib = max([peak_mib] + [t["peak_rss_mib"] for t in timings.values()])
    rows = [
        row("pipeline", "tiny run wall time (the organism cached)", wall, "s", "< 300"),
        row("pipeline", "tiny run peak memory", peak_mib / 1024, "GiB", "< 6"),
    ]
    rows += [row("pipeline", f"stage {name}", t["seconds"], "s") for name, t in timings.items()]
    return rows


if __name__ == "__main__":
    print_table(run(), "whole tiny pipeline")
