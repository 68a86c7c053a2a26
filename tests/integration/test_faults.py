"""Faults through the real command line: a stage process SIGKILLed at a seeded random point, then
rerun, must finish with the same bytes an uninterrupted run writes.

- sft-data with source=model (seeded sampling on the tiny model): killed after a random number of
  journalled batches plus a random delay; the rerun decodes only the rest.
- evaluate (each variant in its own subprocess): killed after a random number of variants, a random
  delay into the next variant's process; that child dies with its parent (no orphan goes on to
  write its file), and the rerun resumes at the first variant without a file.

The uninterrupted references run in this process through the same stage functions and the same
resolved config, which also checks that the command line adds nothing of its own to the outputs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stage1.io.journal import JOURNAL_NAME
from stage1.pipeline import run_stage_on_files
from stage1.stages.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261125  # decides where each kill lands
POLL_S = 0.05

pytestmark = pytest.mark.slow


def cli(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "ab") as handle:  # the child keeps its own copy of the descriptor
        # From the log's temporary folder, never the checkout: the CLI must work from anywhere.
        return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=log.parent, stdout=handle, stderr=handle, env=env)


def finish(process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    try:
        status = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
    assert status == 0, log.read_text(errors="replace")[-3000:]


def wait_until(condition, process: subprocess.Popen, log: Path, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the process ended (status {process.returncode}) before {what}:\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def sigkill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL



# ---------------------------------------------------------------- (a) sft-data generation

SFT_OVERRIDES = [
    "sft_data.source=model",
    "sft_data.samples_per_instruction=2",
    "sft_data.max_per_instruction=2",
    "sft_data.num_fewshot=2",
    "sft_data.generation.max_new_tokens=24",
    "sft_data.generation.batch_size=2",
    "sft_data.generation.do_sample=true",
]
NUM_BATCHES = 8  # 8 instructions x 2 samples / batch size 2


def committed_batches(journal: Path) -> int:
    if not journal.is_file():
        return 0
    return sum(1 for line in journal.read_bytes().split(b"\n")[:-1] if line.startswith(b'{"commit"'))


def test_sft_data_killed_during_generation_resumes_to_the_same_bytes(ending_model, tmp_path):
    rows = [json.loads(line) for line in (ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl").read_text().splitlines()[:8]]
    instructions = tmp_path / "instructions.jsonl"
    instructions.write_text("".join(json.dumps({k: r[k] for k in ("id", "instruction", "category")}) + "\n" for r in rows))
    eval_items = ROOT / "stage1" / "pools" / "eval" / "items.jsonl"
    inputs = {"instructions": instructions, "model": ending_model, "eval_items": eval_items}
    reference = tmp_path / "reference"
    run_stage_on_files("sft_data", load_config(None, SFT_OVERRIDES), inputs, reference)
    assert json.loads((reference / "manifest.json").read_text())["counts"]["train"] >= 3, "rows to compare"

    rng = random.Random(f"{SEED}:sft_data")
    batches_before_kill, delay = rng.randint(1, NUM_BATCHES - 3), rng.uniform(0.0, 0.2)
    out, log = tmp_path / "killed", tmp_path / "sft_data.log"
    args = ["sft-data", "--in", f"instructions={instructions}", "--in", f"model={ending_model}", "--in", f"eval_items={eval_items}"]
    args += ["--out", str(out)]
    args += [item for override in SFT_OVERRIDES for item in ("--set", override)]
    process = cli(args, log)
    wait_until(lambda: committed_batches(out / JOURNAL_NAME) >= batches_before_kill, process, log, "the chosen batch")
    time.sleep(delay)
    sigkill(process)
    assert not (out / "manifest.json").exists(), "the kill must land inside generation; lower the delay"
    journalled = committed_batches(out / JOURNAL_NAME)
    assert batches_before_kill <= journalled < NUM_BATCHES

    finish(cli(args, log), log)
    for name in ("train.jsonl", "heldout.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generation_journal"]["reused"] >= 2 * journalled
    assert manifest["generation_journal"]["generated"] == 16 - manifest["generation_journal"]["reused"]
    assert manifest["counts"] == json.loads((reference / "manifest.json").read_text())["counts"]
    assert not (out / JOURNAL_NAME).exists()


# ---------------------------------------------------------------- (b) evaluation

EVAL_OVERRIDES = ["eval.max_new_tokens=8", "eval.batch_size=4", "eval.bootstrap_samples=50", "eval.min_category_items=3",
                  "eval.variants=[base_raw, base, sft]"]
RUN_VARIANTS = ("base_raw", "base", "sft")  # evaluated in this order; dpo is reported as skipped (no adapter)
TRAINING_ROWS = [("Name a musical instrument.", "A violin."), ("Which animal says moo?", "A cow.")]


@pytest.fixture(scope="module")
def eval_run(tiny_model_dir, ending_model, tmp_path_factory) -> tuple[Path, Path]:
    """A run directory as the pipeline lays it out, trained on nothing: the tiny model as base, the
    nudged copy as the "merged" SFT model; small training files for the leakage gate; 6 items."""
    from stage1.core.format import render_completion, render_prompt

    root = tmp_path_factory.mktemp("faults-eval")
    run = root / "run"
    shutil.copytree(tiny_model_dir, run / "model")
    shutil.copytree(ending_model, run / "merged")
    # The nudged copy stands in for the merged SFT model, so it says so (evaluation checks each
    # variant is the model its name says: stage1.eval.variant_identity).
    from stage1.io.lineage import Lineage, weights_hash, write_lineage

    write_lineage(run / "merged", Lineage(kind="merged", parent_path="../model", parent_hash=weights_hash(run / "model"),
                                          quantization="none", dtype="float32", eos_token="<|endoftext|>", eos_token_id=151643,
                                          weights_hash=weights_hash(run / "merged")))
    sft = [{"id": f"t{i}", "instruction": q, "response": a} for i, (q, a) in enumerate(TRAINING_ROWS)]
    pairs = [{"prompt": render_prompt(q), "chosen": render_completion(a), "rejected": render_completion("I cannot say."),
              "instruction_id": f"t{i}", "category": "general", "negative_kind": "unwarranted_refusal", "split": "train"}
             for i, (q, a) in enumerate(TRAINING_ROWS)]
    for path, rows in ((run / "sft_data" / "train.jsonl", sft), (run / "pairs" / "train.jsonl", pairs)):
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    items = root / "items.jsonl"
    items.write_text("".join((ROOT / "fixtures" / "golden" / "items.jsonl").read_text().splitlines(keepends=True)[:6]))
    return run, items


def comparable(out: Path) -> dict:
    """Everything evaluation wrote, minus what describes the run rather than the result (timings,
    memory, process ids, whether a variant was resumed, in or out of process)."""
    results = json.loads((out / "results.json").read_text())
    results.pop("runs")
    results["settings"].pop("in_process")  # the reference runs in process, the killed run does not
    generations = {v: json.loads((out / "generations" / f"{v}.json").read_text()) for v in RUN_VARIANTS}
    return {
        "results": results,
        "report": (out / "report.md").read_text(),
        "generations": {v: (g["fingerprint"], g["responses"]) for v, g in generations.items()},
    }


def variant_child_running(pid: int, variant: str) -> bool:
    """Whether the evaluation process ``pid`` has a child running ``variant``'s job."""
    import psutil

    try:
        commands = [" ".join(child.cmdline()) for child in psutil.Process(pid).children()]
    except psutil.Error:  # a child ended while we looked
        return False
    return any("stage1.eval.runner" in command and f".job-{variant}.json" in command for command in commands)


def orphans(out: Path) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "stage1.eval.runner" in cmdline and str(out) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process.info["pid"])
    return found


def test_evaluation_killed_between_variants_resumes_at_the_next_one(eval_run, tmp_path):
    run, items = eval_run
    reference = tmp_path / "reference"
    config = load_config(None, [*EVAL_OVERRIDES, "eval.in_process=true"])
    run_stage_on_files("eval", config, {"run": run, "eval_items": items}, reference)

    rng = random.Random(f"{SEED}:eval")
    variants_before_kill, delay = rng.randint(1, len(RUN_VARIANTS) - 1), rng.uniform(0.0, 0.5)
    out, log = tmp_path / "killed", tmp_path / "evaluate.log"
    args = ["evaluate", "--in", f"run={run}", "--in", f"eval_items={items}", "--out", str(out)]
    args += [item for override in (*EVAL_OVERRIDES, "eval.in_process=false") for item in ("--set", override)]
    process = cli(args, log)
    finished_first = [out / "generations" / f"{name}.json" for name in RUN_VARIANTS[:variants_before_kill]]
    wait_until(lambda: all(path.exists() for path in finished_first), process, log, "the chosen variant")
    in_flight = RUN_VARIANTS[variants_before_kill]
    wait_until(lambda: variant_child_running(process.pid, in_flight), process, log, f"the {in_flight} process")
    time.sleep(delay)  # the kill lands while that child loads or generates
    sigkill(process)
    done = [name for name in RUN_VARIANTS if (out / "generations" / f"{name}.json").exists()]
    time.sleep(1.0)  # an orphaned child would still be loading or generating now, and write later
    assert orphans(out) == [], "the variant in flight must die with its parent"
    assert [name for name in RUN_VARIANTS if (out / "generations" / f"{name}.json").exists()] == done
    assert not (out / "results.json").exists(), "the kill must land before the report; lower the delay"
    assert len(done) >= variants_before_kill

    finish(cli(args, log), log)
    assert comparable(out) == comparable(reference)
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [name for name in RUN_VARIANTS if runs[name]["resumed"]] == done, "finished variants are reused, the rest run"
    assert not list((out / "generations").glob(".job-*")), "no job file left behind"
