"""The quantised path on CPU (bitsandbytes 0.50): nf4 and int8 load, LoRA trains on top, and the
nf4 adapter merges into 16-bit weights, or into the dequantised nf4 weights it was trained against."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_training import LORA_ARGS, SFT_TRAIN_ARGS, write_sft_rows

from stage1.core.errors import LineageError
from stage1.hf.models import check_quantization, load_model
from stage1.io.lineage import read_lineage
from stage1.train.settings import TrainingSettings
from stage1.train.sft import run_train_sft

pytestmark = pytest.mark.slow

SHORT = {**SFT_TRAIN_ARGS, "max_steps": 3, "save_steps": 3}


def test_nf4_and_int8_load_as_bitsandbytes_layers_on_cpu(tiny_model_dir):
    import bitsandbytes as bnb

    nf4 = load_model(tiny_model_dir, quantization="nf4")
    q_proj = nf4.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, bnb.nn.Linear4bit) and q_proj.weight.quant_state.quant_type == "nf4"
    assert q_proj.weight.quant_state.nested, "double quantisation"
    assert q_proj.compute_dtype == torch.bfloat16
    int8 = load_model(tiny_model_dir, quantization="int8")
    assert isinstance(int8.model.layers[0].mlp.down_proj, bnb.nn.Linear8bitLt)
    assert int8.model.layers[0].mlp.down_proj.weight.dtype == torch.int8


@pytest.fixture(scope="module")
def nf4_run(tiny_model_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nf4")
    train = write_sft_rows(root / "train.jsonl")
    run_train_sft(TrainingSettings(quantization="nf4"), model_dir=tiny_model_dir, train_path=train, out_dir=root / "sft",
                  sft_args=SHORT, lora_args=LORA_ARGS)
    return root / "sft"


def test_qlora_trains_on_cpu_and_records_nf4(nf4_run):
    from safetensors.torch import load_file

    lineage = read_lineage(nf4_run / "adapter")
    assert lineage.quantization == "nf4"
    tensors = load_file(str(nf4_run / "adapter" / "adapter_model.safetensors"))
    lora_b = [t for name, t in tensors.items() if "lora_B" in name]
    assert len(lora_b) == 14 and all(t.float().abs().max() > 0 for t in lora_b)
    losses = [e["loss"] for e in json.loads((nf4_run / "log_history.json").read_text()) if "loss" in e]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    # Evaluation refuses to run this adapter on another quantisation unless told to.
    with pytest.raises(LineageError):
        check_quantization(lineage.quantization, "none")


def test_int8_trains_on_cpu(tiny_model_dir, tmp_path):
    train = write_sft_rows(tmp_path / "train.jsonl")
    manifest = run_train_sft(TrainingSettings(quantization="int8"), model_dir=tiny_model_dir, train_path=train,
                             out_dir=tmp_path / "sft", sft_args={**SHORT, "max_steps": 2}, lora_args=LORA_ARGS)
    assert manifest["quantization"] == "int8" and manifest["counts"]["steps"] == 2
    assert manifest["loss"]["last"] < manifest["loss"]["first"]


def test_dequantized_nf4_merge_is_closer_to_the_trained_model_than_16bit(nf4_run, tiny_model_dir, tmp_path):
    from safetensors import safe_open

    from stage1.train.merge import run_merge

    results = {}
    for mode in ("16bit", "dequantized_nf4"):
        settings = TrainingSettings(quantization="nf4", merge_mode=mode)
        results[mode] = run_merge(settings, model_dir=tiny_model_dir, adapter_dir=nf4_run / "adapter", out_dir=tmp_path / mode)
        with safe_open(str(tmp_path / mode / "model.safetensors"), "pt") as weights:
            names = list(weights.keys())
            assert not [n for n in names if "absmax" in n or "quant" in n], "merged weights must not be quantised"
            assert weights.get_tensor("model.layers.0.self_attn.q_proj.weight").dtype == torch.float32
        assert "quantization_config" not in json.loads((tmp_path / mode / "config.json").read_text())
        assert read_lineage(tmp_path / mode).quantization == "nf4"  # downstream stages hold it as it was trained
    exact, approximate = results["dequantized_nf4"]["max_logit_diff_vs_live"], results["16bit"]["max_logit_diff_vs_live"]
    # The live model computes in bf16, so even the dequantised merge differs by bf16 rounding.
    assert exact < 0.02 and exact < approximate / 5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_chain_on_cuda(tiny_model_dir, tmp_path):
    """The 32B path in miniature: nf4 + bf16 compute on the GPU, merge on the CPU, DPO on the merged model in nf4."""
    from tiny_training import DPO_TRAIN_ARGS, write_pairs

    from stage1.train.dpo import run_train_dpo
    from stage1.train.merge import run_merge

    settings = TrainingSettings(quantization="nf4", dtype="bfloat16", device="cuda", merge_mode="dequantized_nf4")
    train = write_sft_rows(tmp_path / "train.jsonl")
    sft = run_train_sft(settings, model_dir=tiny_model_dir, train_path=train, out_dir=tmp_path / "sft", sft_args=SHORT, lora_args=LORA_ARGS)
    assert sft["config"]["resolved"]["bf16"] is True and sft["config"]["resolved"]["gradient_checkpointing"] is True
    merged = run_merge(settings, model_dir=tiny_model_dir, adapter_dir=tmp_path / "sft" / "adapter", out_dir=tmp_path / "merged")
    assert merged["merge_device"] == "cpu"
    pairs_train, pairs_eval = write_pairs(tmp_path / "pairs")
    dpo = run_train_dpo(settings, model_dir=tmp_path / "merged", train_path=pairs_train, eval_path=pairs_eval,
                        out_dir=tmp_path / "dpo", dpo_args={**DPO_TRAIN_ARGS, "max_steps": 2}, lora_args=LORA_ARGS)
    history = [e for e in json.loads((tmp_path / "dpo" / "log_history.json").read_text()) if "loss" in e]
    assert history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert dpo["quantization"] == "nf4"
