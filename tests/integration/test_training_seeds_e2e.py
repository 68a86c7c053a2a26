"""A second training seed added to the session's finished tiny run, through the CLI: only that seed
trains, into its own folder, and the seeds report reads both seeds' evaluations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEEDED = ("sft", "merge", "dpo", "dpo_only", "eval")
FOLDERS = {"merge": "merged"}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_second_seed_trains_only_itself_and_the_report_reads_both(tiny_run, tmp_path):
    from safetensors.torch import load_file

    run_dir, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)  # copy2: modification times kept, so the records still match
    # eval.limit keeps the two evaluations cheap (the run's own evaluation reruns for it, nothing else).
    sets = ["--set", "training.seeds=[0, 1]", "--set", "eval.limit=40"]
    result = _cli("run", "--run-dir", str(copy), "--config", "tiny-random", *sets, "--force", "seeds", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in ("model", "sft_data", "sft", "merge", "negatives", "pairs", "dpo", "dpo_only"):
        assert f"✓ {stage}: up to date" in result.stdout, f"{stage} retrained:\n{result.stdout[-3000:]}"
    seed_dir = copy / "seeds" / "seed-1"
    for stage in SEEDED:
        folder = seed_dir / FOLDERS.get(stage, stage)
        assert (folder / "manifest.json").is_file() and (folder / "stage.json").is_file(), stage
        assert f"✓ seed-1/{stage} finished" in result.stdout, stage
    sft = json.loads((seed_dir / "sft" / "manifest.json").read_text())
    assert sft["seed"] == 1 and json.loads((copy / "sft" / "manifest.json").read_text())["seed"] == 0
    ours, theirs = (load_file(str(folder / "adapter" / "adapter_model.safetensors")) for folder in (copy / "dpo", seed_dir / "dpo"))
    assert any(not ours[name].equal(theirs[name]) for name in ours), "another seed trains another adapter"

    results = json.loads((seed_dir / "eval" / "results.json").read_text())
    variants = results["provenance"]["variants"]
    assert Path(variants["dpo"]["adapter_dir"]).resolve() == (seed_dir / "dpo" / "adapter").resolve()
    assert Path(variants["dpo_only"]["adapter_dir"]).resolve() == (seed_dir / "dpo_only" / "adapter").resolve()
    own = json.loads((copy / "eval" / "results.json").read_text())
    summary = json.loads((copy / "seeds" / "summary" / "seeds.json").read_text())
    assert summary["seed_values"] == [0, 1] and summary["num_items"] == 40
    rate = summary["rates"]["dpo"]["stopped_with_end"]
    assert rate["per_seed"] == [own["rates"]["dpo"]["stopped_with_end"]["rate"], results["rates"]["dpo"]["stopped_with_end"]["rate"]]
    lifts = {(c["before"], c["after"], c["criterion"]): c for c in summary["comparisons"]}
    assert ("sft", "dpo", "stopped_with_end") in lifts and all(0 <= c["p_adjusted"] <= 1 for c in lifts.values())
    markdown = (copy / "seeds" / "summary" / "seeds.md").read_text()
    assert "seeds 0, 1" in markdown and "| sft → dpo | stopped_with_end |" in markdown

    again = _cli("run", "--run-dir", str(copy), "--config", "tiny-random", *sets, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in (*SEEDED, "seeds"):
        name = stage if stage == "seeds" else f"seed-1/{stage}"
        assert f"✓ {name}: up to date" in again.stdout, f"{name} reran:\n{again.stdout[-3000:]}"
