"""The memory plan: exact parameter counts, hand-checked arithmetic, and published 32B figures."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from stage1.core.errors import ConfigError
from stage1.hf.memory_estimate import (
    GIB,
    NF4_BITS,
    VLLM_RUNTIME_GIB,
    GenerationWorkload,
    Workload,
    activation_gib,
    check_fits,
    check_vllm_fits,
    kv_bytes_per_token,
    plan_generation,
    plan_memory,
    plan_training,
    plan_vllm,
    weight_gib,
)
from stage1.hf.memplan import check_engine_fits, plan_for_config
from stage1.hf.model_shape import ModelShape, count_parameters_on_meta, read_architecture
from stage1.hf.vllm_backend import VLLMSettings
from stage1.train.settings import TrainingSettings

ARCH_32B = Path(__file__).resolve().parents[3] / "stage1" / "presets" / "architectures" / "qwen2.5-32b.json"
SEVEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def qwen32b() -> ModelShape:
    return read_architecture(ARCH_32B)


def test_architecture_file_holds_the_real_qwen25_32b_values():
    config = json.loads(ARCH_32B.read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (64, 5120, 27648)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (40, 8)
    assert config["hidden_size"] // config["num_attention_heads"] == 128
    assert config["vocab_size"] == 152064 and config["tie_word_embeddings"] is False
    assert config["rope_theta"] == 1_000_000.0 and config["rms_norm_eps"] == 1e-5
    assert config["model_type"] == "qwen2" and config["eos_token_id"] == 151643


@pytest.mark.slow
def test_closed_form_count_equals_a_meta_device_model_and_the_published_total(qwen32b):
    # 32,763,876,352 is the count Hugging Face lists for Qwen/Qwen2.5-32B ("32.8B params").
    assert count_parameters_on_meta(ARCH_32B) == qwen32b.parameter_count() == 32_763_876_352


def test_closed_form_count_equals_the_tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # Tied embeddings: named_parameters() lists the shared matrix once.
    shape = read_architecture(tiny_model_dir / "config.json")
    assert shape.tie_word_embeddings
    assert shape.parameter_count() == sum(p.numel() for p in model.parameters())


def test_lora_count_by_hand_on_a_toy_shape():
    shape = ModelShape(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, head_dim=4, vocab_size=10, tie_word_embeddings=True)
    # q (8->8), k (8->4), v (8->4), o (8->8), gate/up (8->16), down (16->8); r=2 adds r*(in+out) each.
    per_layer = 2 * (16 + 12 + 12 + 16 + 24 + 24 + 24)
    assert shape.lora_parameters(2, SEVEN) == 2 * per_layer
    assert shape.lora_parameters(2, ("q_proj", "v_proj")) == 2 * 2 * (16 + 12)
    with pytest.raises(ConfigError, match="lm_head"):
        shape.lora_parameters(2, ("lm_head",))


def test_activation_arithmetic_by_hand():
    shape = ModelShape(hidden_size=8, intermediate_size=16, num_hidden_layers=3, num_attention_heads=2,
                       num_key_value_heads=1, head_dim=4, vocab_size=10, tie_word_embeddings=True)
    per_token_layer = 8 * 8 + 2 * 4 + 4 * 16  # 136 values
    tokens = 100
    assert activation_gib(shape, tokens, False, "bfloat16") * GIB == pytest.approx(3 * per_token_layer * tokens * 2)
    kept = 3 * 8 * tokens * 2  # each layer's input, bf16
    assert activation_gib(shape, tokens, True, "bfloat16") * GIB == pytest.approx(kept + per_token_layer * tokens * 2)


def test_nf4_weights_are_about_a_quarter_of_16bit(qwen32b):
    assert NF4_BITS == pytest.approx(4.127, abs=1e-3)
    bf16 = weight_gib(qwen32b, "none", "bfloat16")
    assert bf16 * GIB == pytest.approx(qwen32b.parameter_count() * 2)
    assert bf16 == pytest.approx(61.0, abs=0.1)  # ~65.5 GB: 32.76B parameters x 2 bytes
    nf4 = weight_gib(qwen32b, "nf4", "bfloat16")
    assert 16.5 < nf4 < 19.5  # 31.2B quantised weights at ~4.13 bits + 1.56B embeddings and lm_head in bf16


def test_qlora_32b_fits_well_under_80_gib(qwen32b):
    work = Workload(quantization="nf4", batch_size=4, max_length=2048)
    plan = plan_memory(qwen32b, sft=work, dpo=work)
    assert plan.stage("sft").total_gib < 40
    assert plan.stage("dpo").total_gib < 60
    check_fits(plan, 80)
    assert plan.problems() == []


def test_qlora_33b_class_fits_a_24_gb_card_at_small_batch(qwen32b):
    # QLoRA (arXiv:2305.14314): 33B models fine-tune on a single 24 GB consumer GPU.
    tiny_batch = Workload(quantization="nf4", batch_size=1, max_length=512)
    assert plan_training(qwen32b, tiny_batch, "sft").total_gib < 24


def test_16bit_lora_32b_does_not_fit_beside_activations(qwen32b):
    work = Workload(quantization="none", dtype="bfloat16", batch_size=4, max_length=2048)
    plan = plan_memory(qwen32b, sft=work, dpo=work)
    dpo = plan.stage("dpo")
    assert dpo.parts["weights"] > 60
    assert dpo.total_gib > 80
    # Without checkpointing, 16-bit SFT is hopeless too.
    no_checkpointing = Workload(quantization="none", dtype="bfloat16", batch_size=4, max_length=2048, gradient_checkpointing=False)
    assert plan_training(qwen32b, no_checkpointing, "sft").total_gib > 200
    with pytest.raises(ConfigError) as error:
        check_fits(plan, 80)
    assert "nf4" in str(error.value) and "dpo" in str(error.value)
    assert any("dpo" in line for line in plan.problems())


def test_gradient_checkpointing_cuts_activations_by_about_the_layer_count(qwen32b):
    on = activation_gib(qwen32b, 8192, True, "bfloat16")
    off = activation_gib(qwen32b, 8192, False, "bfloat16")
    assert 20 < off / on < 64


def test_merge_on_cpu_needs_no_gpu(qwen32b):
    plan = plan_memory(qwen32b, sft=Workload(), dpo=Workload(), merge_device="cpu")
    merge = plan.stage("merge")
    assert merge.device == "cpu" and merge.total_gib == pytest.approx(61.0, abs=0.1)
    on_gpu = plan_memory(qwen32b, sft=Workload(), dpo=Workload(), merge_device="cuda", gpu_gib=48)
    assert any(line.startswith("merge") for line in on_gpu.problems())


def test_plan_for_config_reads_the_sections(tmp_path):
    config = SimpleNamespace(
        model=SimpleNamespace(architecture=str(ARCH_32B), path=None),
        training=TrainingSettings(quantization="nf4", dtype="bfloat16"), eval=SimpleNamespace(batch_size=4, max_new_tokens=256),
        sft={"per_device_train_batch_size": 2, "max_length": 1024},
        dpo={"per_device_train_batch_size": 1, "max_length": 1024},
        lora={"r": 32},
    )
    plan = plan_for_config(config, gpu_gib=80)
    assert plan.parameters == 32_763_876_352
    sft = plan.stage("sft")
    expected = plan_training(read_architecture(ARCH_32B), Workload(quantization="nf4", lora_r=32, batch_size=2, max_length=1024), "sft")
    assert sft.total_gib == expected.total_gib
    assert plan.gpu_gib == 80
    assert plan_for_config(config).gpu_gib == TrainingSettings().gpu_memory_gib


def test_generation_kv_cache_by_hand(qwen32b):
    work = GenerationWorkload(stage="eval", quantization="none", dtype="bfloat16", batch_size=16, total_tokens=1024)
    plan = plan_generation(qwen32b, work)
    # 64 layers x (k and v) x 8 heads x 128 dims x 16 sequences x 1024 tokens x 2 bytes = 4 GiB
    assert plan.parts["kv cache"] == pytest.approx(4.0, abs=1e-3)
    assert plan.parts["logits"] == pytest.approx(16 * 152064 * 4 / GIB, abs=1e-3)


def test_qwen25_32b_keeps_256_kib_of_kv_per_token(qwen32b):
    assert kv_bytes_per_token(qwen32b, "bfloat16") == 64 * 8 * 128 * 2 * 2 == 256 * 1024


def _vllm(**changes):
    values = {"stage": "sft_data", "quantization": "none", "dtype": "bfloat16", "total_tokens": 1024, "backend": "vllm",
              "gpu_memory_utilization": 0.9, "max_num_seqs": 32, "section": "sft_data"}
    return GenerationWorkload(**{**values, **changes})


def test_vllm_reserves_its_share_and_the_kv_cache_is_what_is_left_after_the_weights(qwen32b):
    plan = plan_vllm(qwen32b, _vllm(), 80.0)
    assert plan.total_gib == pytest.approx(72.0), "0.9 x 80 GiB, reserved up front whatever the model"
    assert plan.parts["weights"] == pytest.approx(weight_gib(qwen32b, "none", "bfloat16"), abs=1e-3)
    assert plan.parts["runtime"] == VLLM_RUNTIME_GIB
    assert sum(plan.parts.values()) == pytest.approx(72.0, abs=0.01), "the KV cache takes the rest of the reservation"
    assert 5.0 < plan.parts["kv cache"] < 8.0 and not plan.problem
    assert any("0.25 GiB of KV per sequence" in note for note in plan.notes), "1024 tokens x 256 KiB"
    split = plan_vllm(qwen32b, _vllm(tensor_parallel_size=2), 80.0)
    assert split.parts["weights"] == pytest.approx(plan.parts["weights"] / 2, abs=1e-3), "tensor parallel splits the weights"
    assert any("0.12 GiB of KV per sequence" in note for note in split.notes), "and each GPU keeps half the KV heads"


def test_vllm_with_the_model_s_whole_context_is_refused_naming_the_setting(qwen32b):
    with pytest.raises(ConfigError, match="131072 needs 32.00 GiB") as raised:
        check_vllm_fits(qwen32b, _vllm(total_tokens=131072), 80.0)
    assert raised.value.field == "sft_data.vllm.max_model_len"
    assert "sft_data.vllm.gpu_memory_utilization" in raised.value.hint
    check_vllm_fits(qwen32b, _vllm(total_tokens=131072, quantization="nf4"), 80.0)  # 18 GiB of nf4 weights leave room for it
    with pytest.raises(ConfigError, match="nothing is left for the KV cache") as raised:
        check_vllm_fits(qwen32b, _vllm(gpu_memory_utilization=0.5), 80.0)  # 40 GiB cannot hold 61 GiB of weights
    assert raised.value.field == "sft_data.vllm.gpu_memory_utilization"


def test_plan_refuses_a_vllm_stage_whose_kv_cache_cannot_hold_one_sequence(capsys):
    import cli

    assert cli.main(["plan", "--config", "qwen2.5-32b"]) == 0
    shown = capsys.readouterr().out
    assert "reserves 0.9 x 80 GiB" in " ".join(shown.split()), "plan shows vLLM's reservation"
    assert cli.main(["plan", "--config", "qwen2.5-32b", "--set", "sft_data.vllm.max_model_len=131072"]) == 2
    shown = " ".join(capsys.readouterr().out.split())
    assert "sft_data.vllm.max_model_len 131072 needs 32.00 GiB" in shown


def test_the_engine_is_checked_against_the_real_prompts_before_it_starts(tmp_path):
    (tmp_path / "config.json").write_text(ARCH_32B.read_text())
    plan = check_engine_fits(tmp_path, "none", "bfloat16", VLLMSettings(), 512, None, "eval", gpu_gib=80.0)
    assert plan.stage == "eval"
    with pytest.raises(ConfigError) as raised:
        check_engine_fits(tmp_path, "none", "bfloat16", VLLMSettings(), 131072, None, "eval", gpu_gib=80.0)
    assert raised.value.field == "eval.vllm.max_model_len"


def test_plan_for_config_adds_sft_data_generation_when_the_model_writes_responses():
    decoding = SimpleNamespace(batch_size=64, max_new_tokens=256)
    config = SimpleNamespace(
        model=SimpleNamespace(architecture=str(ARCH_32B), path=None),
        run=SimpleNamespace(generation_backend="transformers"),
        training=TrainingSettings(quantization="nf4", dtype="bfloat16"),
        sft_data=SimpleNamespace(source="model", quantization="none", dtype="bfloat16", generation=decoding),
        sft={}, dpo={}, lora={},
    )
    plan = plan_for_config(config, gpu_gib=80)
    assert [s.stage for s in plan.stages] == ["sft_data", "sft", "merge", "dpo", "eval"]
    assert any(line.startswith("sft_data") for line in plan.problems()), "64 x 768 tokens of bf16 KV beside 61 GiB of weights"
    config.run.generation_backend = "vllm"
    vllm_plan = plan_for_config(config, gpu_gib=80)
    assert vllm_plan.problems() == []
    assert vllm_plan.stage("sft_data").total_gib == pytest.approx(72.0), "vLLM's share of the GPU, planned up front"
    assert "kv cache" in vllm_plan.stage("sft_data").parts
