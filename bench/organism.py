"""The model organism: build time from nothing, and whether two builds give the same bytes.

    python -m bench.organism

Each build runs in a fresh subprocess with its own empty cache (``STAGE1_CACHE``), so nothing is
reused; the second build's weights are compared with the first's, byte for byte.
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


def _build(folder: Path, cache: Path) -> tuple[float, str, dict]:
    env = {**os.environ, "STAGE1_CACHE": str(cache)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", BUILD, str(folder)], cwd=ROOT, env=env, check=True)
    seconds = time.perf_counter() - started
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    return seconds, digest, json.loads((folder / "organism.json").read_text())


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first_s, first, manifest = _build(root / "one", root / "cache-one")
        _, second, _ = _build(root / "two", root / "cache-two")
    probe = manifest["fill_in_the_blank"]
    return [
        row("organism", "build from nothing (wall)", first_s, "s", "< 180", note=f"pretraining {manifest['pretrain_seconds']} s"),
        row("organism", "two builds bit-identical", float(first == second), "bool", ">= 1"),
        row("organism", "final pretraining loss", manifest["final_loss"], "nats/token"),
        row("organism", "fill-in-the-blank, facts SFT trains on", probe.get("train", 0.0), "share"),
        row("organism", "fill-in-the-blank, held-out facts", probe.get("heldout", 0.0), "share"),
    ]


if __name__ == "__main__":
    print_table(run(), "model organism")
