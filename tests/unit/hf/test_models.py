"""One way to load: the bitsandbytes config, safetensors only, eos checks, quantisation and lineage checks."""

from __future__ import annotations

import shutil

import pytest
import torch

from stage1.core.errors import ConfigError, InputError, LineageError
from stage1.hf.models import (
    bnb_config,
    check_quantization,
    eos_info,
    free_model,
    load_adapter,
    load_model,
    load_tokenizer,
)
from stage1.io.lineage import write_lineage


def test_one_bitsandbytes_config_nf4_double_quant_bf16_compute():
    config = bnb_config("nf4")
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is True
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb_config("int8").load_in_8bit
    assert bnb_config("none") is None
    with pytest.raises(ConfigError, match="fp4"):
        bnb_config("fp4")


def test_check_quantization_refuses_a_mismatch_unless_allowed():
    assert check_quantization("nf4", "nf4") is True
    with pytest.raises(LineageError, match="nf4"):
        check_quantization("nf4", "none")
    assert check_quantization("nf4", "none", allow_mismatch=True) is False
    with pytest.raises(ConfigError):
        check_quantization("nf4", "gptq")


def test_load_model_reads_safetensors_only(tiny_model_dir, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_model_dir / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(InputError, match="safetensors"):
        load_model(pickled)
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nowhere")
    model = load_model(tiny_model_dir)
    assert next(model.parameters()).dtype == torch.float32


def test_tokenizer_loses_any_chat_template(tiny_model_dir, tmp_path):
    import json

    folder = tmp_path / "with_template"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(folder).chat_template, "the template must be there to be removed"
    loaded = load_tokenizer(folder)
    assert loaded.chat_template is None
    assert loaded.eos_token_id == loaded.pad_token_id == 151643


def test_eos_is_checked_against_the_generation_config(tiny_model_dir):
    model = load_model(tiny_model_dir)
    tokenizer = load_tokenizer(tiny_model_dir)
    info = eos_info(model, tokenizer)
    assert (info.token, info.token_id, info.generation_eos_ids) == ("<|endoftext|>", 151643, (151643,))
    model.generation_config.eos_token_id = 151645
    with pytest.raises(ConfigError, match="151645"):
        eos_info(model, tokenizer)


def _fake_adapter(tiny_model_dir, folder, parent_hash):
    from peft import LoraConfig, get_peft_model

    from stage1.io.lineage import Lineage

    model = get_peft_model(load_model(tiny_model_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(str(folder))
    write_lineage(folder, Lineage(kind="sft_adapter", parent_path=str(tiny_model_dir), parent_hash=parent_hash,
                                  quantization="none", dtype="float32", eos_token="<|endoftext|>", eos_token_id=151643))
    return folder


@pytest.mark.slow
def test_load_adapter_checks_the_recorded_parent(tiny_model_dir, tmp_path):
    from stage1.hf.tiny import build_tiny_qwen
    from stage1.io.lineage import weights_hash

    good = _fake_adapter(tiny_model_dir, tmp_path / "good", weights_hash(tiny_model_dir))
    from peft import PeftModel

    wrapped = load_adapter(load_model(tiny_model_dir), good)
    assert isinstance(wrapped, PeftModel)
    load_adapter(load_model(tiny_model_dir), good, expected_parent=weights_hash(tiny_model_dir))

    other_dir = build_tiny_qwen(tmp_path / "other-base", seed=1)
    with pytest.raises(LineageError, match="weights"):
        load_adapter(load_model(other_dir), good)
    with pytest.raises(LineageError):
        load_adapter(load_model(tiny_model_dir), good, expected_parent=weights_hash(other_dir))
    bare = tmp_path / "bare"
    shutil.copytree(good, bare)
    (bare / "lineage.json").unlink()
    with pytest.raises(LineageError, match="missing"):
        load_adapter(load_model(tiny_model_dir), bare)


def test_free_model_releases_every_tensor(tiny_model_dir):
    model = load_model(tiny_model_dir)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000
    free_model(model)
    assert sum(p.numel() for p in model.parameters()) == 0
    assert all(b.numel() == 0 for b in model.buffers())


def test_load_model_names_an_adapter_folder(tmp_path, tiny_model_dir):
    import json

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(InputError, match="LoRA adapter folder"):
        load_model(adapter)
    no_type = tmp_path / "no_type"
    shutil.copytree(tiny_model_dir, no_type)
    config = json.loads((no_type / "config.json").read_text())
    del config["model_type"]
    (no_type / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="model_type"):
        load_model(no_type)
