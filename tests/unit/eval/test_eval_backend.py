"""Evaluation's generation backend: the setting, what it changes, the vLLM engine arguments, the
lineage check on the vLLM path, and a child process that dies with its parent. The vLLM run
itself needs vllm and CUDA (marked gpu)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stage1.core.errors import ConfigError, LineageError
from stage1.eval.runner import load_vllm_variant
from stage1.eval.settings import EvalSettings, VariantSpec
from stage1.eval.stage import _job
from stage1.hf.generation import VLLMSettings, vllm_engine_args, vllm_max_model_len


def test_the_backend_defaults_to_transformers_and_is_a_checked_choice():
    assert EvalSettings().backend == "transformers"
    assert EvalSettings.from_dict({"backend": "vllm"}).backend == "vllm"
    with pytest.raises(ConfigError) as raised:
        EvalSettings.from_dict({"backend": "vlm"})
    assert raised.value.field == "eval.backend"
    with pytest.raises(ConfigError) as raised:
        EvalSettings.from_dict({"backned": "vllm"})
    assert "backend" in str(raised.value), "the nearest valid key is named"


def test_vllm_refuses_in_process_evaluation():
    with pytest.raises(ConfigError, match="own process"):
        EvalSettings(backend="vllm", in_process=True)


def test_the_backend_is_part_of_each_variant_s_fingerprint(tmp_path):
    """Generations from one backend are never resumed as another's."""
    spec = VariantSpec("base", tmp_path)
    described = {"model_hash": "m", "adapter_hash": None}
    first = _job(spec, described, [], EvalSettings(), tmp_path, dry_run=False)
    second = _job(spec, described, [], EvalSettings(backend="vllm"), tmp_path, dry_run=False)
    assert first["settings"]["backend"] == "transformers" and second["settings"]["backend"] == "vllm"
    assert first["fingerprint"] != second["fingerprint"]


SIZING = {"gpu_memory_utilization": 0.9, "max_num_seqs": 64, "tensor_parallel_size": 1, "enable_prefix_caching": True}


@pytest.mark.parametrize(
    ("quantization", "rank", "expected"),
    [
        ("none", None, {"dtype": "bfloat16", "seed": 3}),
        ("nf4", None, {"dtype": "bfloat16", "seed": 3, "quantization": "bitsandbytes"}),
        ("none", 16, {"dtype": "bfloat16", "seed": 3, "enable_lora": True, "max_lora_rank": 16, "max_loras": 1}),
        ("none", 12, {"dtype": "bfloat16", "seed": 3, "enable_lora": True, "max_lora_rank": 16, "max_loras": 1}),
        ("none", 2, {"dtype": "bfloat16", "seed": 3, "enable_lora": True, "max_lora_rank": 8, "max_loras": 1}),
    ],
)
def test_vllm_engine_args_keep_the_training_precision_and_fit_the_adapter(quantization, rank, expected):
    assert vllm_engine_args(quantization, "bfloat16", 3, rank) == {**expected, **SIZING}


def test_vllm_engine_args_carry_the_stage_s_sizing_and_its_own_length():
    sizing = VLLMSettings(gpu_memory_utilization=0.8, max_num_seqs=32, tensor_parallel_size=2, enable_prefix_caching=False)
    args = vllm_engine_args("nf4", "bfloat16", 0, None, vllm=sizing, max_model_len=512)
    assert args == {"dtype": "bfloat16", "seed": 0, "quantization": "bitsandbytes", "max_model_len": 512,
                    "gpu_memory_utilization": 0.8, "max_num_seqs": 32, "tensor_parallel_size": 2, "enable_prefix_caching": False}


@pytest.mark.parametrize(("prompt", "new", "expected"), [(108, 256, 512), (0, 256, 256), (1, 256, 512), (20, 48, 256), (1000, 256, 1280)])
def test_max_model_len_is_the_stage_s_budget_rounded_up_to_256(prompt, new, expected):
    assert vllm_max_model_len(prompt, new) == expected
    assert vllm_max_model_len(prompt, new) < 131072


def test_a_max_model_len_setting_is_used_unless_a_prompt_would_not_fit():
    assert vllm_max_model_len(100, 256, setting=4096) == 4096
    with pytest.raises(ConfigError, match="below the longest prompt") as raised:
        vllm_max_model_len(300, 256, setting=512)
    assert raised.value.field == "vllm.max_model_len"


def test_vllm_sizing_is_a_checked_subsection_of_both_generation_stages():
    from stage1.stages.config import load_config

    config = load_config("qwen2.5-32b")
    assert config.section("sft_data").vllm.enable_prefix_caching is True, "few-shot prompts share their exemplars"
    assert config.section("eval").vllm.enable_prefix_caching is False
    assert EvalSettings().vllm.enable_prefix_caching is False
    with pytest.raises(ConfigError) as raised:
        load_config("qwen2.5-32b", ["eval.vllm.gpu_memory_utilisation=0.8"])
    assert "gpu_memory_utilization" in str(raised.value), "the nearest valid key is named"
    for bad in ("gpu_memory_utilization=1.5", "max_num_seqs=0", "tensor_parallel_size=0", "max_model_len=0"):
        with pytest.raises(ConfigError):
            load_config("qwen2.5-32b", [f"sft_data.vllm.{bad}"])


def test_the_vllm_sizing_is_part_of_a_vllm_variant_s_fingerprint(tmp_path):
    spec = VariantSpec("base", tmp_path)
    described = {"model_hash": "m", "adapter_hash": None}
    first = _job(spec, described, [], EvalSettings(backend="vllm"), tmp_path, dry_run=False)
    second = _job(spec, described, [], EvalSettings(backend="vllm", vllm=VLLMSettings(max_num_seqs=8)), tmp_path, dry_run=False)
    assert first["settings"]["vllm"]["max_num_seqs"] == 64 and first["fingerprint"] != second["fingerprint"]


def test_vllm_engine_args_refuse_what_vllm_cannot_do():
    with pytest.raises(ConfigError, match="int8") as raised:
        vllm_engine_args("int8", "bfloat16", 0, None)
    assert raised.value.field == "eval.backend"
    with pytest.raises(ConfigError) as raised:
        vllm_engine_args("int8", "bfloat16", 0, None, field="run.generation_backend")
    assert raised.value.field == "run.generation_backend", "the error names the setting that chose vLLM"
    with pytest.raises(ConfigError, match="rank 600"):
        vllm_engine_args("none", "bfloat16", 0, 600)


@pytest.mark.slow
def test_the_vllm_path_checks_lineage_before_starting_an_engine(tiny_model_dir, tmp_path):
    """A foreign adapter is refused before vllm is imported (so this runs without vllm or a GPU)."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    with pytest.raises(LineageError, match="missing"):
        load_vllm_variant(VariantSpec("dpo", tiny_model_dir, adapter_dir=adapter), dtype="float32", seed=0, parent_hash=None)
    foreign = Path(__file__).resolve().parents[3] / "fixtures" / "bad" / "files" / "foreign_adapter" / "lineage.json"
    (adapter / "lineage.json").write_text(foreign.read_text())
    spec = VariantSpec("dpo", tiny_model_dir, adapter_dir=adapter)
    with pytest.raises(LineageError, match="was made from"):
        load_vllm_variant(spec, dtype="float32", seed=0, parent_hash="1" * 64)  # the hash the parent measured
    with pytest.raises(LineageError, match="was made from"):
        load_vllm_variant(spec, dtype="float32", seed=0, parent_hash=None)  # measured here from the folder


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from stage1.eval.runner import exit_with_parent
    exit_with_parent(int(sys.argv[1]))
    print("armed", flush=True)
    time.sleep(60)
    """
)
PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())], stdout=sys.stdout)
    print(child.pid, flush=True)
    time.sleep(60)
    """
)


def test_a_child_dies_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "armed"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 5
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child_pid)
    if alive:
        os.kill(child_pid, signal.SIGKILL)
    assert not alive, "the child outlived its parent"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_child_whose_parent_is_already_gone_exits_at_once():
    script = "from stage1.eval.runner import exit_with_parent; exit_with_parent(1); print('ran on')"
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 3 and "ran on" not in completed.stdout


@pytest.mark.gpu
def test_vllm_evaluation_gives_every_item_a_response(tiny_model_dir, tmp_path):
    pytest.importorskip("vllm", reason="vllm is an optional extra (pip install -e '.[vllm]')")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    from stage1.eval.stage import run_evaluate

    items = Path(__file__).resolve().parents[3] / "fixtures" / "golden" / "items.jsonl"
    settings = EvalSettings(backend="vllm", variants=("base",), max_new_tokens=8, bootstrap_samples=50, dtype="float32")
    run_evaluate(settings, variants=[VariantSpec("base", tiny_model_dir)], items_path=items, out_dir=tmp_path)
    record = json.loads((tmp_path / "generations" / "base.json").read_text())
    assert len(record["responses"]) == sum(1 for line in items.read_text().splitlines() if line.strip())
    assert all(0 < r["num_tokens"] <= 8 for r in record["responses"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["provenance"]["decoding"]["backend"] == "vllm"
