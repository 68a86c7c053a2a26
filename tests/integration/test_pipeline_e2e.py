"""The whole tiny pipeline through the CLI, as a user runs it: `python cli.py run`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
ALL_STAGES = ("model", "sft_data", "sft", "merge", "negatives", "pairs", "dpo", "dpo_only", "eval")


# A user's own folder, never the checkout: the CLI must find its presets and pools from anywhere.
ELSEWHERE = Path(tempfile.mkdtemp(prefix="stage1-user-"))


def _cli(*args: str, timeout: int = 900, cwd: Path = ELSEWHERE) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_run_produces_a_report_and_training_helps(tiny_run):
    run_dir, result = tiny_run
    for name in ("results.json", "report.md", "chart.png"):
        assert (run_dir / "eval" / name).is_file()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "run.log").is_file()
    # The report's path as the user's own folder sees it: the run was started there with no --run-dir.
    assert "report: runs/tiny/eval/report.md" in result.stdout.replace("\n", "")
    assert (run_dir.parent.parent / "runs" / "tiny" / "eval" / "report.md").is_file()
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    rates = {variant: results["rates"][variant]["stopped_with_end"]["rate"] for variant in ("base", "sft")}
    assert rates["sft"] > rates["base"], rates


@pytest.mark.slow
def test_one_tiny_run_builds_the_tokenizer_once(tiny_run):
    """Every stage asks for the tokenizer, and the merged model holds the base's tokenizer files byte
    for byte: one build in the whole run (the cache is keyed by the files' content)."""
    run_dir, result = tiny_run
    counts = result.stderr.strip().splitlines()[-1].split()
    assert counts[0] == "TOKENIZERS", result.stderr[-2000:]
    requested, built = int(counts[2]), int(counts[4])
    assert requested >= 5 and built == 1, (requested, built)
    base, merged = run_dir / "model", run_dir / "merged"
    assert (merged / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()


@pytest.mark.slow
def test_requests_that_should_be_declined_flow_from_the_pools_to_the_report(tiny_run):
    """The pools' refusal_expected rows reach SFT (kept as refusals), negatives (compliance, no
    refusals) and evaluation (scored by refuses_when_expected, n/a for no_unwarranted_refusal)."""
    run_dir, _ = tiny_run
    sft_rows = [json.loads(line) for name in ("train.jsonl", "heldout.jsonl") for line in (run_dir / "sft_data" / name).read_text().splitlines()]
    declined = {row["id"] for row in sft_rows if row.get("refusal_expected")}
    assert len(declined) == 8
    negatives = [json.loads(line) for line in (run_dir / "negatives" / "negatives.jsonl").read_text().splitlines()]
    kinds = {n["kind"] for n in negatives if n["instruction_id"] in declined}
    assert "unwarranted_refusal" not in kinds and "complied_when_refusal_expected" in kinds
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    for variant, rates in results["rates"].items():
        assert rates["refuses_when_expected"]["n"] == 8, variant
        assert rates["no_unwarranted_refusal"]["n"] == results["num_items"] - 8, variant
    assert "refuses_when_expected" in (run_dir / "eval" / "report.md").read_text()


@pytest.mark.slow
def test_dpo_reward_accuracy_on_its_eval_split(tiny_run):
    run_dir, _ = tiny_run
    manifest = json.loads((run_dir / "dpo" / "manifest.json").read_text())
    assert manifest["counts"]["pairs_eval"] > 0
    assert manifest["reward_accuracy"] > 0.5, manifest["rewards"]
    assert set(manifest["by_source"]) == {"rules"} and manifest["logp_shift"]["count"] == manifest["counts"]["pairs_eval"]
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert set(results["dpo_training"]) == {"dpo", "dpo_only"}  # each DPO variant's diagnostics reach the report
    assert results["dpo_training"]["dpo"]["logp_shift"] == manifest["logp_shift"]
    assert "## DPO training" in (run_dir / "eval" / "report.md").read_text()


@pytest.mark.slow
def test_second_run_skips_every_stage(tiny_run):
    run_dir, _ = tiny_run
    before = {stage: (run_dir / stage / "stage.json").stat().st_mtime_ns for stage in ("sft_data", "sft", "dpo", "eval")}
    again = _cli("run", "--run-dir", str(run_dir), "--config", "tiny-random")
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ALL_STAGES:
        assert f"{stage}: up to date" in again.stdout, f"{stage} was not skipped:\n{again.stdout[-3000:]}"
    after = {stage: (run_dir / stage / "stage.json").stat().st_mtime_ns for stage in before}
    assert after == before


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint(tiny_run, tmp_path):
    from stage1.train.callbacks import last_checkpoint

    run_dir, _ = tiny_run
    resumed = tmp_path / "run"
    resumed.mkdir()
    for stage in ("model", "sft_data"):
        shutil.copytree(run_dir / stage, resumed / stage)
    command = [sys.executable, str(ROOT / "cli.py"), "train-sft", "--run-dir", str(resumed), "--config", "tiny-random", "--set", "sft.save_steps=4"]
    process = subprocess.Popen(command, cwd=ELSEWHERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = resumed / "sft" / "checkpoints"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        # a checkpoint the training would resume from: the Trainer writes trainer_state.json last,
        # and not atomically, so the file appears before it is whole; a kill in that window leaves
        # nothing to resume from
        if last_checkpoint(checkpoints) is not None:
            break
        time.sleep(0.5)
    assert process.poll() is None, "training finished before a checkpoint could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (resumed / "sft" / "stage.json").exists()
    saved = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    finished = _cli("train-sft", "--run-dir", str(resumed), "--config", "tiny-random", "--set", "sft.save_steps=4")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert (resumed / "sft" / "adapter").is_dir() and (resumed / "sft" / "stage.json").is_file()
    manifest = json.loads((resumed / "sft" / "manifest.json").read_text())
    assert manifest["resumed_from"] is not None, "the second run must resume, not start over"
    assert Path(manifest["resumed_from"]).name in {p.name for p in saved}


@pytest.mark.slow
def test_forced_training_starts_over_and_a_finished_one_adds_no_step(tiny_run, tmp_path):
    """`train-sft --force sft` after a finished SFT used to resume from its last checkpoint and
    train one step past max_steps; it now retrains from scratch to the same adapter, and a rerun
    whose last checkpoint is already at max_steps finishes from it without training."""
    from safetensors.torch import load_file

    run_dir, _ = tiny_run
    again = tmp_path / "run"
    for stage in ("model", "sft_data", "sft"):
        shutil.copytree(run_dir / stage, again / stage)
    steps = json.loads((run_dir / "sft" / "manifest.json").read_text())["counts"]["steps"]
    forced = _cli("train-sft", "--run-dir", str(again), "--config", "tiny-random", "--force", "sft")
    assert forced.returncode == 0, forced.stderr[-3000:]
    manifest = json.loads((again / "sft" / "manifest.json").read_text())
    assert manifest["resumed_from"] is None and manifest["counts"]["steps"] == steps
    reference = load_file(str(run_dir / "sft" / "adapter" / "adapter_model.safetensors"))
    for name, tensor in load_file(str(again / "sft" / "adapter" / "adapter_model.safetensors")).items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-5, atol=1e-6)

    (again / "sft" / "stage.json").unlink()  # as if killed after the last checkpoint, before the stage was marked done
    finished = _cli("train-sft", "--run-dir", str(again), "--config", "tiny-random")
    assert finished.returncode == 0, finished.stderr[-3000:]
    manifest = json.loads((again / "sft" / "manifest.json").read_text())
    assert Path(manifest["resumed_from"]).name == f"checkpoint-{steps}" and manifest["counts"]["steps"] == steps
    assert not (again / "sft" / "checkpoints" / f"checkpoint-{steps + 1}").exists()


def test_an_unknown_stage_in_force_exits_2_naming_the_stages(tmp_path):
    """`--force merged` (the stage is `merge`) used to exit 0 and rerun nothing."""
    result = _cli("run", "--run-dir", str(tmp_path / "run"), "--force", "merged", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "unknown stage 'merged'" in output and "did you mean 'merge'" in output and "dpo_only" in output


@pytest.mark.slow
def test_tiny_random_run_matches_its_golden_result(tiny_run):
    """The plumbing's regression check: the random-weight run against fixtures/golden/tiny_random_run.json,
    through the CLI (the organism's own golden is checked in test_organism_run.py)."""
    run_dir, _ = tiny_run
    result = _cli("evaluate", "--run-dir", str(run_dir), "--config", "tiny-random", "--against",
                  str(ROOT / "fixtures" / "golden" / "tiny_random_run.json"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no significant regression" in result.stdout


def test_golden_check_fails_on_a_real_regression(tmp_path):
    """The same check exits 1 when a variant loses its END lines (the golden result edited by hand)."""
    golden = json.loads((ROOT / "fixtures" / "golden" / "tiny_run.json").read_text())
    worse = json.loads(json.dumps(golden))
    for row in worse["items"]:
        row["outcomes"]["sft"]["criteria"]["stopped_with_end"] = False
    worse["rates"]["sft"]["stopped_with_end"].update(successes=0, rate=0.0, low=0.0, high=0.02)
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    from stage1.eval.golden import compare_files

    regressions = compare_files(tmp_path / "worse.json", ROOT / "fixtures" / "golden" / "tiny_run.json")
    assert [(r.variant, r.criterion) for r in regressions] == [("sft", "stopped_with_end")]
