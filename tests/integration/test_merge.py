"""Merging the SFT adapter: the merged model is the live base+adapter model, saved as plain safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_training import SFT_ROWS, merged_run, prompts, sft_run, train_file

from stage1.core.errors import ConfigError, LineageError
from stage1.core.format import render_completion
from stage1.core.masking import encode_text
from stage1.io.lineage import adapter_hash, read_lineage, weights_hash
from stage1.train.settings import TrainingSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def merged_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return merged_run(tiny_model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return sft_run(tiny_model_dir, tmp_path_factory) / "adapter"


def _logits(model, tokenizer) -> list[torch.Tensor]:
    rows = [encode_text(tokenizer, p + render_completion(r)) for p, (_, r) in zip(prompts(), SFT_ROWS)]
    with torch.no_grad():
        return [model(input_ids=torch.tensor([ids])).logits[0] for ids in rows]


def test_merged_logits_equal_live_base_plus_adapter(merged_dir, adapter_dir, tiny_model_dir):
    from stage1.hf.models import load_adapter, load_model, load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    live = _logits(load_adapter(load_model(tiny_model_dir), adapter_dir), tokenizer)
    merged = _logits(load_model(merged_dir), tokenizer)
    base = _logits(load_model(tiny_model_dir), tokenizer)
    for a, b in zip(live, merged):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
    assert max(float((a - c).abs().max()) for a, c in zip(live, base)) > 1e-2, "the adapter must change the model"
    manifest = json.loads((merged_dir / "manifest.json").read_text())
    assert manifest["max_logit_diff_vs_live"] < 1e-4 and manifest["merge_mode"] == "16bit"


def test_merged_folder_is_plain_safetensors_with_tokenizer_and_lineage(merged_dir, adapter_dir, tiny_model_dir):
    names = {p.name for p in merged_dir.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "lineage.json", "manifest.json"} <= names
    assert not list(merged_dir.glob("*.bin")) and "adapter_config.json" not in names
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    lineage = read_lineage(merged_dir)
    assert lineage.kind == "merged"
    assert lineage.parent_hash == weights_hash(tiny_model_dir)
    assert lineage.adapter_hash == adapter_hash(adapter_dir)
    assert lineage.weights_hash == weights_hash(merged_dir) != weights_hash(tiny_model_dir)
    assert lineage.eos_token_id == 151643 and lineage.quantization == "none"


def test_merged_tokenizer_encodes_like_the_base(merged_dir, tiny_model_dir):
    from stage1.hf.models import load_tokenizer

    base, merged = load_tokenizer(tiny_model_dir), load_tokenizer(merged_dir)
    for text in ("Instruction: What is 2024?\nResponse:", " <|endoftext|> BACKEND\nEND", "日本語 e\u0301 C#"):
        assert encode_text(merged, text) == encode_text(base, text)
    assert merged.eos_token_id == base.eos_token_id == 151643


def test_merge_refuses_a_base_the_adapter_was_not_trained_on(adapter_dir, tmp_path):
    from stage1.hf.tiny import build_tiny_qwen
    from stage1.train.merge import run_merge

    other = build_tiny_qwen(tmp_path / "other", seed=3)
    with pytest.raises(LineageError, match="weights"):
        run_merge(TrainingSettings(), model_dir=other, adapter_dir=adapter_dir, out_dir=tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_the_merge_into_dequantised_nf4_weights_is_removed():
    """Reloaded in nf4 by DPO and evaluation, it kept almost none of the SFT gain (docs/notes/training.md)."""
    with pytest.raises(ConfigError, match="removed") as raised:
        TrainingSettings(quantization="nf4", merge_mode="dequantized_nf4")
    assert "sft_handoff: adapter" in raised.value.hint


def test_the_merge_records_the_sft_gain_kept_as_dpo_and_evaluation_load_it(adapter_dir, tiny_model_dir, tmp_path):
    from stage1.train.handoff import FIDELITY_NAME
    from stage1.train.merge import run_merge

    manifest = run_merge(TrainingSettings(), model_dir=tiny_model_dir, adapter_dir=adapter_dir, out_dir=tmp_path / "merged",
                         sft_train_path=train_file(adapter_dir.parent), eval_dtype="float32")
    fidelity = manifest["fidelity"]
    assert fidelity["trained_loss"] < fidelity["base_loss"], "SFT lowered the loss on its rows"
    (load,) = fidelity["loads"]
    assert load["loaded_by"] == "dpo+eval", "eval at the training dtype loads what DPO loads"
    # fidelity.json is hashed by DPO and evaluation: the folder's name, never the run's path.
    assert load["how"].startswith("merged, ") and str(tmp_path) not in load["how"] and "quantization none" in load["how"]
    assert load["sft_gain_kept"] == pytest.approx(1.0, abs=1e-3) and load["max_logit_diff"] < 1e-4, "an fp32 merge is exact"
    assert json.loads((tmp_path / "merged" / FIDELITY_NAME).read_text()) == fidelity
    other = run_merge(TrainingSettings(), model_dir=tiny_model_dir, adapter_dir=adapter_dir, out_dir=tmp_path / "m2",
                      sft_train_path=train_file(adapter_dir.parent), eval_dtype="bfloat16")
    assert [load["loaded_by"] for load in other["fidelity"]["loads"]] == ["dpo", "eval"], "another eval dtype is another load"


def test_the_fidelity_gate_stops_a_merge_that_lost_the_sft_gain(adapter_dir, tiny_model_dir, tmp_path, monkeypatch):
    """A merge that drops the update (as a re-quantised one does) is refused before anything downstream runs."""
    from stage1.core.errors import GateError
    from stage1.hf.models import load_model
    from stage1.train import merge

    monkeypatch.setattr(merge, "merge_adapter", lambda model_dir, adapter, settings: load_model(model_dir))
    out = tmp_path / "merged"
    with pytest.raises(GateError, match="keeps -?[0-9.]+% of the SFT gain") as raised:
        merge.run_merge(TrainingSettings(), model_dir=tiny_model_dir, adapter_dir=adapter_dir, out_dir=out,
                        sft_train_path=train_file(adapter_dir.parent))
    assert "training.min_sft_gain_kept 0.9" in str(raised.value)
    assert not (out / "manifest.json").exists(), "no manifest: the stage is not done and DPO cannot start"
    (load,) = json.loads((out / "fidelity.json").read_text())["loads"]
    assert abs(load["sft_gain_kept"]) < 0.05, "the base alone keeps none of the gain"
    merge.run_merge(TrainingSettings(min_sft_gain_kept=0.0), model_dir=tiny_model_dir, adapter_dir=adapter_dir, out_dir=out,
                    sft_train_path=train_file(adapter_dir.parent))  # 0 hands the model on unchecked
