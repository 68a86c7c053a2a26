"""SFT runs unchanged under a DDP launcher: two CPU processes (gloo) write one coherent adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from tiny_training import LORA_ARGS, SFT_TRAIN_ARGS, write_sft_rows

from stage1.io.lineage import read_lineage, weights_hash

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent(
    """
    import json, os, pathlib, sys
    from stage1.train.settings import TrainingSettings
    from stage1.train.sft import run_train_sft

    model_dir, train, out, sft_args, lora_args, results = sys.argv[1:7]
    manifest = run_train_sft(
        TrainingSettings(target_effective_batch=8), model_dir=model_dir, train_path=train, out_dir=out,
        sft_args=json.loads(sft_args), lora_args=json.loads(lora_args),
    )
    # one file per rank: the ranks share one stdout, where their writes can interleave mid-line
    pathlib.Path(results, f"rank-{os.environ['RANK']}.json").write_text(json.dumps({"keys": sorted(manifest)}))
    """
)


def test_two_processes_train_one_checkpoint(tiny_model_dir, tmp_path):
    train = write_sft_rows(tmp_path / "train.jsonl")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "sft"
    results = tmp_path / "results"
    results.mkdir()
    # Per-process batch 4 x 2 processes = the effective batch of 8 the settings require.
    sft_args = {**SFT_TRAIN_ARGS, "per_device_train_batch_size": 4, "max_steps": 3, "save_steps": 3}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(driver),
        str(tiny_model_dir), str(train), str(out), json.dumps(sft_args), json.dumps(LORA_ARGS), str(results),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in results.iterdir()) == ["rank-0.json", "rank-1.json"], "both processes finish"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["effective_batch"] == {"per_device": 4, "accumulation": 1, "processes": 2, "size": 8}
    assert manifest["counts"]["steps"] == 3
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-3"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["adapter", "checkpoints", "log_history.json", "manifest.json"]
    lineage = read_lineage(out / "adapter")
    assert lineage.parent_hash == weights_hash(tiny_model_dir) and lineage.extra["effective_batch"]["processes"] == 2
    from stage1.hf.models import load_adapter, load_model

    load_adapter(load_model(tiny_model_dir), out / "adapter")
