"""The 32B preset's QLoRA chain on the tiny model, end to end on CPU: `python cli.py run --config tiny-qlora`.

One run of the preset as it ships, read by one test: the SFT model handed to DPO and evaluation
keeps its gain as they load it, DPO continued the SFT adapter, and evaluation says what each variant
loaded. The preset's sizes are already those of a CPU smoke run (12 SFT steps, 4 DPO steps, 32
evaluated items); the run only gets one torch thread, as the suite's other subprocess runs do: on
busy shared cores two intra-op threads wait on each other at every small operator (the whole run
took 317 s with two, 113 s with one; docs/notes/training.md, "`tiny-qlora` and what only a GPU exercises").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_qlora_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("tiny-qlora") / "run"
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(ROOT / "cli.py"), "run", "--config", "tiny-qlora", "--run-dir", str(run_dir)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_the_tiny_qlora_chain_keeps_the_sft_model_and_says_what_it_evaluated(tiny_qlora_run):
    run_dir = tiny_qlora_run
    handoff = json.loads((run_dir / "merged" / "manifest.json").read_text())
    assert handoff["sft_handoff"] == "adapter" and handoff["adapter_quantization"] == "nf4"
    fidelity = handoff["fidelity"]
    assert fidelity["trained_loss"] < fidelity["base_loss"] and fidelity["min_sft_gain_kept"] == 0.9
    assert [load["loaded_by"] for load in fidelity["loads"]] == ["dpo+eval"], "eval.dtype = training.dtype: one load serves both"
    assert all(load["sft_gain_kept"] >= 0.9 for load in fidelity["loads"]), fidelity
    assert not list((run_dir / "merged").glob("*.safetensors")), "nothing was merged"

    dpo = json.loads((run_dir / "dpo" / "manifest.json").read_text())
    assert dpo["parent_kind"] == "sft_adapter" and dpo["quantization"] == "nf4"
    history = [e for e in json.loads((run_dir / "dpo" / "log_history.json").read_text()) if "loss" in e]
    assert abs(history[0]["loss"] - 0.6931) < 1e-3, "the reference is the SFT model: policy == reference at step 0"

    variants = json.loads((run_dir / "eval" / "results.json").read_text())["provenance"]["variants"]
    assert variants["sft"]["model_dir"] == str(run_dir / "model") and variants["sft"]["adapter_dir"] == str(run_dir / "sft" / "adapter")
    assert variants["dpo"]["adapter_dir"] == str(run_dir / "dpo" / "adapter")
    assert variants["dpo_only"]["adapter_dir"] == str(run_dir / "dpo_only" / "adapter")
    assert {v["quantization"] for v in variants.values()} == {"nf4"}
    report = (run_dir / "eval" / "report.md").read_text()
    assert f"| sft | {run_dir / 'model'} | {run_dir / 'sft' / 'adapter'} | wrapped | nf4 |" in report
