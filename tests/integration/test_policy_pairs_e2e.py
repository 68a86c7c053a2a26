"""``stage1 run`` with pairs from the SFT model's own samples, on the tiny model: one run directory,
first with ``negatives.source=policy``, then ``mixed`` with both DPO arms (``training.dpo_arms``) in
the same directory (SFT, merge and the samples are reused). Mechanics only: the tiny model's
samples are gibberish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_pipeline_e2e import _cli

from stage1.core.records import PreferencePair
from stage1.io.records import read_records

pytestmark = pytest.mark.slow

POOL = Path(__file__).resolve().parents[2] / "stage1" / "pools" / "sft" / "instructions.jsonl"

# Small: the random-weight tiny model (plumbing), a quarter of the pool (every fourth row, so every category stays), two samples of 8 tokens,
# no DPO-only baseline, short training, 30 evaluation items.
SMALL = ["--config", "tiny-random", "--set", "negatives.policy.k=2", "--set", "negatives.policy.max_new_tokens=8", "--set", "training.dpo_only=false",
         "--set", "sft.max_steps=20", "--set", "dpo.max_steps=3", "--set", "eval.limit=30",
         # 3 DPO steps on random weights test the arms' plumbing, not the method: the held-out margin
         # check may read a tiny negative margin, so the method checks warn here (their own tests
         # are tests/integration/test_method_harness.py)
         "--set", "training.method_checks=warn"]


def _quarter_pool(folder: Path) -> Path:
    path = folder / "instructions.jsonl"
    path.write_text("".join(POOL.read_text(encoding="utf-8").splitlines(keepends=True)[::4]), encoding="utf-8")
    return path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_policy_then_mixed_runs_finish_with_labelled_pairs(tmp_path):
    run_dir = tmp_path / "run"
    small = [*SMALL, "--set", f"data.instructions={_quarter_pool(tmp_path)}"]
    policy = _cli("run", "--run-dir", str(run_dir), "--set", "negatives.source=policy", *small,
                  "--set", "eval.variants=[sft,dpo]", cwd=tmp_path, timeout=1800)
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

    # The ablation in one command: dpo on every pair, and one DPO arm per source; base and base_raw are
    # left out of this evaluation to keep it short. New settings on a built run need --force (eval
    # reruns either way); the stages they do not change stay up to date.
    mixed = _cli("run", "--run-dir", str(run_dir), "--force", "eval", "--set", "negatives.source=mixed", "--set", "training.dpo_arms=[rules,policy]",
                 *small, "--set", "eval.variants=[sft,dpo,dpo_rules,dpo_policy]", cwd=tmp_path, timeout=1800)
    assert mixed.returncode == 0, mixed.stdout[-3000:] + mixed.stderr[-3000:]
    timings = _json(run_dir / "timings.json")
    assert (run_dir / "samples" / "negatives.jsonl").read_bytes() == samples_bytes  # up to date: not sampled again
    pairs = read_records(run_dir / "pairs" / "train.jsonl", PreferencePair)
    sources = {p.negative_source for p in pairs}
    assert sources == {"rules", "policy"}, sources
    assert all(p.negative_kind.startswith("policy:") == (p.negative_source == "policy") for p in pairs)
    assert set(_json(run_dir / "dpo" / "manifest.json")["by_source"]) <= {"rules", "policy"}
    assert "negatives" in timings and (run_dir / "eval" / "report.md").is_file()
    _check_arms(run_dir, pairs)


def _check_arms(run_dir: Path, train_pairs: list[PreferencePair]) -> None:
    """Each arm trained its own adapter on the merged SFT model from its source's pairs only, and is
    evaluated, compared and reported beside the other."""
    results = _json(run_dir / "eval" / "results.json")
    assert results["variants"] == ["sft", "dpo", "dpo_rules", "dpo_policy"]
    described = results["provenance"]["variants"]
    dpo_lineage = _json(run_dir / "dpo" / "adapter" / "lineage.json")
    for source in ("rules", "policy"):
        arm = f"dpo_{source}"
        manifest = _json(run_dir / arm / "manifest.json")
        assert (run_dir / arm / "stage.json").is_file() and (run_dir / arm / "adapter" / "adapter_model.safetensors").is_file()
        assert manifest["negative_source"] == source and set(manifest["by_source"]) == {source}
        assert manifest["counts"]["pairs_train"] == sum(p.negative_source == source for p in train_pairs) > 0
        lineage = _json(run_dir / arm / "adapter" / "lineage.json")
        assert (lineage["parent_path"], lineage["parent_hash"]) == (dpo_lineage["parent_path"], dpo_lineage["parent_hash"])
        assert described[arm]["model_dir"] == described["dpo"]["model_dir"] and described[arm]["pairs_source"] == source
        assert Path(described[arm]["adapter_dir"]) == run_dir / arm / "adapter" and described[arm]["quantization"] == "none"
    compared = {(c["before"], c["after"]): c.get("family") for c in results["comparisons"]}
    for pair in (("sft", "dpo_rules"), ("sft", "dpo_policy"), ("dpo_rules", "dpo_policy")):
        assert compared[pair] == "pair_sources", pair
    report = (run_dir / "eval" / "report.md").read_text().split("\n")
    section = report[report.index("## Pair-source arms"):report.index("## Paired comparisons")]
    assert [line.split(" | ")[:2] for line in section if line.startswith("| `dpo_")] == [["| `dpo_rules`", "rules pairs"],
                                                                                       ["| `dpo_policy`", "policy pairs"]]
    assert "| criterion | sft | dpo | dpo_rules | dpo_policy |" in report  # the rates table: these four variants, side by side
    assert any(line.startswith("- dpo_rules → dpo_policy, ") for line in section)
