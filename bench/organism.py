"""The model organism: build time from nothing, and whether two builds give the same bytes.

    python -m bench.organism

Each build runs in a fresh subprocess with its own empty cache (``STAGE1_CACHE``), so nothing is
reused. The first runs on torch's default threads (every core), as ``run`` does; the second on one
thread (``OMP_NUM_THREADS=1``, as each test worker does), and its weights are compared with the
first's, byte for byte: the same bytes twice, and the same bytes whatever the thread count.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.table import Row, print_table, row

ROOT = Path(__file__).resolve().parent.parent
BUILD = "from stage1.organism.build import build_organism; import sys; build_organism(sys.argv[1])"


def _build(folder: Path, cache: Path, threads: int | None = None) -> tuple[float, str, dict]:
    env = {**os.environ, "STAGE1_CACHE": str(cache)}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", BUILD, str(folder)], cwd=ROOT, env=env, check=True)
    seconds = time.perf_counter() - started
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    return seconds, digest, json.loads((folder / "organism.json").read_text())


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first_s, first, manifest = _build(root / "one", root / "cache-one")
        _, second, one_thread = _build(root / "two", root / "cache-two", threads=1)
    probe = manifest["fill_in_the_blank"]
    return [
        row("organism", f"build from nothing (wall, {manifest['threads']} threads)", first_s, "s", "< 180",
            note=f"pretraining {manifest['pretrain_seconds']} s"),
        row("organism", "a second build, on 1 thread: bit-identical", float(first == second), "bool", ">= 1",
            note=f"pretraining {one_thread['pretrain_seconds']} s on {one_thread['threads']} thread"),
        row("organism", "final pretraining loss", manifest["final_loss"], "nats/token"),
        row("organism", "fill-in-the-blank, facts SFT trains on", probe.get("train", 0.0), "share"),
        row("organism", "fill-in-the-blank, held-out facts", probe.get("heldout", 0.0), "share"),
    ]


if __name__ == "__main__":
    print_table(run(), "model organism")
