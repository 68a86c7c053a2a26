"""``stage1 run`` with pairs from the SFT model's own samples, on the tiny model: one run directory,
first with ``negatives.source=policy``, then ``mixed`` in the same directory (SFT, merge and the
samples are reused). Mechanics only: the tiny model's samples are gibberish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_pipeline_e2e import _cli

from stage1.core.records import PreferencePair
from stage1.io.records import read_records

pytestmark = pytest.mark.slow

# Small: two samples of 8 tokens, no DPO-only baseline, short training, 60 evaluation items.
SMALL = ["--set", "negatives.policy.k=2", "--set", "negatives.policy.max_new_tokens=8", "--set", "training.dpo_only=false",
         "--set", "sft.max_steps=20", "--set", "dpo.max_steps=4", "--set", "eval.limit=60"]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_policy_then_mixed_runs_finish_with_labelled_pairs(tmp_path):
    run_dir = tmp_path / "run"
    policy = _cli("run", "--run-dir", str(run_dir), "--set", "negatives.source=policy", *SMALL, cwd=tmp_path, timeout=1800)
    assert policy.returncode == 0, policy.stdout[-3000:] + policy.stderr[-3000:]
    assert not (run_dir / "negatives").exists()  # rule-made negatives are not made for policy pairs
    samples = _json(run_dir / "samples" / "manifest.json")["counts"]
    assert samples["samples"] == 2 * samples["instructions"] and samples["pairs"] > 0
    pairs = [*read_records(run_dir / "pairs" / "train.jsonl", PreferencePair), *read_records(run_dir / "pairs" / "eval.jsonl", PreferencePair)]
    assert pairs and all(p.negative_source == "policy" and p.negative_kind.startswith("policy:") for p in pairs)
    pairs_manifest = _json(run_dir / "pairs" / "manifest.json")
    assert pairs_manifest["selection_criteria"] == samples["selection_criteria"]
    assert set(pairs_manifest["counts"]["train"]["by_source"]) == {"policy"}
    dpo = _json(run_dir / "dpo" / "manifest.json")
    assert set(dpo["by_source"]) == {"policy"} and set(dpo["logp_shift"]["by_kind"]) == set(dpo["by_kind"])
    report = (run_dir / "eval" / "report.md").read_text()
    assert "## DPO training" in report and "policy pairs chosen by stopped_with_end" in report
    samples_bytes = (run_dir / "samples" / "negatives.jsonl").read_bytes()

    mixed = _cli("run", "--run-dir", str(run_dir), "--set", "negatives.source=mixed", *SMALL, cwd=tmp_path, timeout=1800)
    assert mixed.returncode == 0, mixed.stdout[-3000:] + mixed.stderr[-3000:]
    timings = _json(run_dir / "timings.json")
    assert (run_dir / "samples" / "negatives.jsonl").read_bytes() == samples_bytes  # up to date: not sampled again
    pairs = read_records(run_dir / "pairs" / "train.jsonl", PreferencePair)
    sources = {p.negative_source for p in pairs}
    assert sources == {"rules", "policy"}, sources
    assert all(p.negative_kind.startswith("policy:") == (p.negative_source == "policy") for p in pairs)
    assert set(_json(run_dir / "dpo" / "manifest.json")["by_source"]) <= {"rules", "policy"}
    assert "negatives" in timings and (run_dir / "eval" / "report.md").is_file()
