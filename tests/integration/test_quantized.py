"""The quantised path on CPU (bitsandbytes 0.50): nf4 and int8 load, LoRA trains on top, the nf4 SFT
adapter is handed on as it was trained (its fidelity measured as DPO loads it), and DPO goes on
training it against TRL's frozen copy."""

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


def test_an_nf4_model_held_for_training_on_cpu_trains_on_after_a_greedy_sample(tiny_model_dir):
    """The sample callback's eval-mode forward must not switch bitsandbytes to its inference layout."""
    from peft import get_peft_model

    from stage1.hf.lora import build_lora_config
    from stage1.train.run import load_model_for_training

    model = get_peft_model(load_model_for_training(tiny_model_dir, TrainingSettings(quantization="nf4", dtype="bfloat16"), "cpu"),
                           build_lora_config(LORA_ARGS))
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "layers.0.self_attn.q_proj.lora_B" in n]
    assert grads and grads[0] is not None and grads[0].abs().max() > 0


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


def test_the_nf4_sft_adapter_handed_on_as_it_was_trained_keeps_the_whole_gain(nf4_run, tiny_model_dir, tmp_path):
    """sft_handoff: adapter: DPO and evaluation load the nf4 base + the SFT adapter, which is the trained model."""
    from stage1.train.merge import run_handoff

    settings = TrainingSettings(quantization="nf4", sft_handoff="adapter")
    manifest = run_handoff(settings, model_dir=tiny_model_dir, adapter_dir=nf4_run / "adapter", out_dir=tmp_path / "handoff",
                           sft_train_path=nf4_run.parent / "train.jsonl", eval_dtype="float32")
    fidelity = manifest["fidelity"]
    (load,) = fidelity["loads"]
    assert fidelity["trained_loss"] < fidelity["base_loss"]
    assert "quantization nf4" in load["how"] and f"{nf4_run.name}/adapter" in load["how"] and str(nf4_run) not in load["how"]
    assert load["sft_gain_kept"] == pytest.approx(1.0, abs=1e-6) and load["max_logit_diff"] == 0.0
    assert not list((tmp_path / "handoff").glob("*.safetensors")), "nothing is merged"


def test_dpo_continues_the_nf4_sft_adapter_against_a_frozen_copy_of_it(nf4_run, tiny_model_dir, tmp_path):
    """TRL's "ref" copy is the reference: step-0 loss ln 2, and the adapter written is the continued one only."""
    from safetensors.torch import load_file
    from tiny_training import DPO_TRAIN_ARGS, write_pairs

    from stage1.train.dpo import run_train_dpo

    settings = TrainingSettings(quantization="nf4", sft_handoff="adapter", min_optimizer_steps=0)
    pairs_train, pairs_eval = write_pairs(tmp_path / "pairs")
    manifest = run_train_dpo(settings, model_dir=tiny_model_dir, train_path=pairs_train, eval_path=pairs_eval, out_dir=tmp_path / "dpo",
                             dpo_args={**DPO_TRAIN_ARGS, "max_steps": 2, "save_steps": 2}, lora_args=LORA_ARGS,
                             sft_adapter_dir=nf4_run / "adapter")
    history = [e for e in json.loads((tmp_path / "dpo" / "log_history.json").read_text()) if "loss" in e]
    assert history[0]["loss"] == pytest.approx(0.6931, abs=1e-3), "policy == reference == the SFT model at step 0"
    assert manifest["parent_kind"] == "sft_adapter" and manifest["sft_adapter"] == str(nf4_run / "adapter")
    adapter = tmp_path / "dpo" / "adapter"
    assert not (adapter / "ref").exists(), "TRL's frozen copy is not written"
    lineage = read_lineage(adapter)
    assert lineage.parent_hash == read_lineage(nf4_run / "adapter").parent_hash, "its parent is the base, like the SFT adapter's"
    before = load_file(str(nf4_run / "adapter" / "adapter_model.safetensors"))
    after = load_file(str(adapter / "adapter_model.safetensors"))
    assert before.keys() == after.keys(), "the same adapter, continued"
    assert any(not torch.equal(before[name], after[name]) for name in before), "DPO moved it"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_chain_on_cuda(tiny_model_dir, tmp_path):
    """The 32B path in miniature: nf4 + bf16 compute on the GPU; DPO goes on training the SFT adapter on the nf4 base."""
    from tiny_training import DPO_TRAIN_ARGS, write_pairs

    from stage1.train.dpo import run_train_dpo
    from stage1.train.merge import run_handoff

    settings = TrainingSettings(quantization="nf4", dtype="bfloat16", device="cuda", sft_handoff="adapter", min_optimizer_steps=0)
    train = write_sft_rows(tmp_path / "train.jsonl")
    sft = run_train_sft(settings, model_dir=tiny_model_dir, train_path=train, out_dir=tmp_path / "sft", sft_args=SHORT, lora_args=LORA_ARGS)
    assert sft["config"]["resolved"]["bf16"] is True and sft["config"]["resolved"]["gradient_checkpointing"] is True
    handoff = run_handoff(settings, model_dir=tiny_model_dir, adapter_dir=tmp_path / "sft" / "adapter", out_dir=tmp_path / "handoff",
                          sft_train_path=train, eval_dtype="bfloat16")
    assert handoff["fidelity"]["loads"][0]["sft_gain_kept"] >= 0.9
    pairs_train, pairs_eval = write_pairs(tmp_path / "pairs")
    dpo = run_train_dpo(settings, model_dir=tiny_model_dir, train_path=pairs_train, eval_path=pairs_eval,
                        out_dir=tmp_path / "dpo", dpo_args={**DPO_TRAIN_ARGS, "max_steps": 2}, lora_args=LORA_ARGS,
                        sft_adapter_dir=tmp_path / "sft" / "adapter")
    history = [e for e in json.loads((tmp_path / "dpo" / "log_history.json").read_text()) if "loss" in e]
    assert history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert dpo["quantization"] == "nf4"
