"""LoRA SFT on the tiny model: what it writes, that it learns, and how it fails.

One 20-step run is shared (tiny_training.sft_run); the other tests train a few steps of their own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny_training import LORA_ARGS, SFT_ROWS, SFT_TRAIN_ARGS, prompts, sft_run, train_file, write_sft_rows
from transformers import TrainerCallback

from stage1.core.errors import ConfigError, InputError, TrainingError
from stage1.core.masking import IGNORE_INDEX
from stage1.core.records import RecordList, SFTExample
from stage1.hf.lora import QWEN2_PROJECTIONS
from stage1.io.hashing import sha256_file
from stage1.io.lineage import read_lineage, weights_hash
from stage1.train.data import build_sft_rows
from stage1.train.settings import TrainingSettings
from stage1.train.sft import run_train_sft

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return sft_run(tiny_model_dir, tmp_path_factory)


def _adapter_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_manifest_and_lineage_record_the_run(run_dir, tiny_model_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stage"] == "sft"
    assert manifest["counts"]["rows_trained"] == len(SFT_ROWS) and manifest["counts"]["steps"] == 20
    assert manifest["effective_batch"] == {"per_device": 8, "accumulation": 1, "processes": 1, "size": 8}
    assert sorted(manifest["trained_modules"]) == sorted(QWEN2_PROJECTIONS)
    assert manifest["eos"]["token_id"] == 151643 and manifest["quantization"] == "none"
    lineage = read_lineage(run_dir / "adapter")
    assert lineage.kind == "sft_adapter"
    assert lineage.parent_hash == weights_hash(tiny_model_dir) == manifest["parent_hash"]
    assert lineage.data_hashes == {"train": sha256_file(train_file(run_dir))}
    assert lineage.config["resolved"]["learning_rate"] == SFT_TRAIN_ARGS["learning_rate"]
    assert lineage.config["resolved"]["lora"]["target_modules"] == sorted(QWEN2_PROJECTIONS)
    assert (lineage.quantization, lineage.eos_token_id) == ("none", 151643)
    assert not list((run_dir / "adapter").glob("*.bin"))
    # The manifest is written last.
    newest_output = max(p.stat().st_mtime_ns for p in (run_dir / "adapter").iterdir())
    assert (run_dir / "manifest.json").stat().st_mtime_ns >= newest_output
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20"]


def test_lora_weights_moved_in_every_projection_of_every_layer(run_dir):
    tensors = _adapter_tensors(run_dir / "adapter")
    assert not any("lora" not in name for name in tensors), "only LoRA weights belong in the adapter file"
    for layer in range(2):
        for module in QWEN2_PROJECTIONS:
            (name,) = [n for n in tensors if f"layers.{layer}." in n and f".{module}.lora_B" in n]
            assert tensors[name].abs().max() > 0, f"{name} is still at its zero init"


def test_loss_falls(run_dir):
    losses = [entry["loss"] for entry in json.loads((run_dir / "log_history.json").read_text()) if "loss" in entry]
    assert len(losses) == 20
    assert losses[0] == pytest.approx(math.log(151936), abs=0.05)  # a random tiny model starts near uniform
    assert sum(losses[-5:]) / 5 < losses[0] - 0.3


def _end_rate(model, tokenizer) -> float:
    from stage1.train.callbacks import greedy_completions

    outputs = greedy_completions(model, tokenizer, prompts(), max_new_tokens=12)
    return sum(o["stop_reason"] == "end" and bool(o["response"]) for o in outputs) / len(outputs)


def test_learns_to_end_answers_with_END(run_dir, tiny_model_dir):
    from stage1.hf.models import load_adapter, load_model, load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    assert _end_rate(load_model(tiny_model_dir), tokenizer) == 0.0
    trained = load_adapter(load_model(tiny_model_dir), run_dir / "adapter")
    assert _end_rate(trained, tokenizer) >= 0.75


def test_samples_were_generated_during_training(run_dir):
    samples = json.loads((run_dir / "manifest.json").read_text())["samples"]
    assert [s["step"] for s in samples] == [10, 10, 20, 20]
    assert all(s["prompt"].startswith("Instruction: ") and "stop_reason" in s for s in samples)


def _one_step_lora(tiny_model_dir, tmp_path, rows, batch: int, accumulation: int) -> tuple[dict, dict]:
    """LoRA weights after one SGD step (SGD: the update is proportional to the gradient, unlike Adam)."""
    from stage1.hf.lora import build_lora_config
    from stage1.hf.models import load_model, load_tokenizer
    from stage1.train.run import build_config
    from stage1.train.sft import build_sft_trainer

    tokenizer = load_tokenizer(tiny_model_dir)
    args = {"per_device_train_batch_size": batch, "gradient_accumulation_steps": accumulation, "max_steps": 1,
            "optim": "sgd", "learning_rate": 1.0, "max_grad_norm": 0.0, "weight_decay": 0.0, "save_strategy": "no"}
    config = build_config(__import__("trl").SFTConfig, args, "sft", TrainingSettings(), "cpu", tmp_path, 0)
    model = load_model(tiny_model_dir)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = build_sft_trainer(model=model, tokenizer=tokenizer, rows=rows, sft_config=config,
                                lora_config=build_lora_config({**LORA_ARGS, "lora_dropout": 0.0}))
    trainer.train()
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    base_after = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in trainer.model.named_parameters() if "lora_" not in n}
    unchanged = {n: torch.equal(base_before[n], p) for n, p in base_after.items() if n in base_before}
    return lora, unchanged


def test_gradient_accumulation_matches_one_big_batch(tiny_model_dir, qwen_tokenizer, tmp_path):
    examples = [SFTExample(id=str(i), instruction=a, response=b) for i, (a, b) in enumerate(SFT_ROWS[:4])]
    rows = build_sft_rows(qwen_tokenizer, examples, max_length=64, overlong="error", source="rows").rows
    big, base_unchanged = _one_step_lora(tiny_model_dir, tmp_path / "big", rows, batch=4, accumulation=1)
    small, _ = _one_step_lora(tiny_model_dir, tmp_path / "small", rows, batch=1, accumulation=4)
    assert len(base_unchanged) > 10 and all(base_unchanged.values()), "base weights must not train"
    moved = [n for n in big if "lora_B" in n and big[n].abs().max() > 0]
    assert moved, "one step must move the LoRA B weights"
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-6)


def test_overlong_rows_error_with_file_line_and_field_or_are_dropped(qwen_tokenizer, tmp_path):
    rows = [("Short question?", "Short answer."), ("Long question?", "word " * 80), ("Another?", "Yes.")]
    path = write_sft_rows(tmp_path / "train.jsonl", rows)
    # As read_records gives them: each record knows its line in the file, so the error names it.
    examples = RecordList([SFTExample(id=f"r{i}", instruction=a, response=b) for i, (a, b) in enumerate(rows)], [1, 2, 3])
    with pytest.raises(InputError) as error:
        build_sft_rows(qwen_tokenizer, examples, max_length=32, overlong="error", source=path)
    assert (error.value.path, error.value.line, error.value.field) == (str(path), 2, "response")
    assert "r1" in str(error.value) and "training.overlong" in error.value.hint
    kept = build_sft_rows(qwen_tokenizer, examples, max_length=32, overlong="drop", source=path)
    assert len(kept.rows) == 2 and kept.dropped == {"row_too_long": 1} and kept.dropped_ids == ("r1",)
    assert all(len(r["input_ids"]) <= 32 and r["labels"][-1] == 151643 for r in kept.rows)
    assert all(r["labels"][0] == IGNORE_INDEX for r in kept.rows)


def test_config_problems_stop_before_any_model_loads(tiny_model_dir, tmp_path):
    train = write_sft_rows(tmp_path / "train.jsonl")
    common = dict(model_dir=tiny_model_dir, train_path=train, out_dir=tmp_path / "out", lora_args=LORA_ARGS)
    with pytest.raises(ConfigError) as error:
        run_train_sft(TrainingSettings(), sft_args={"max_seq_length": 64}, **common)
    assert error.value.field == "sft.max_seq_length" and "max_length" in error.value.hint
    with pytest.raises(ConfigError, match="effective batch"):
        run_train_sft(TrainingSettings(target_effective_batch=32), sft_args={"per_device_train_batch_size": 8}, **common)
    with pytest.raises(ConfigError) as error:
        run_train_sft(TrainingSettings(), sft_args={}, **{**common, "lora_args": {"target_modules": ["q_proj", "v_proj"]}})
    assert error.value.field == "lora.target_modules"
    assert not (tmp_path / "out" / "manifest.json").exists()


class _StopAt(TrainerCallback):
    """Simulates a crash after ``step`` optimizer steps."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"interrupted at step {self.step}")


def test_resumes_from_the_last_checkpoint_and_matches_an_uninterrupted_run(tiny_model_dir, tmp_path):
    train = write_sft_rows(tmp_path / "train.jsonl")
    args = {**SFT_TRAIN_ARGS, "per_device_train_batch_size": 4, "max_steps": 6, "save_steps": 3}
    common = dict(model_dir=tiny_model_dir, train_path=train, sft_args=args, lora_args=LORA_ARGS)
    with pytest.raises(KeyboardInterrupt):
        run_train_sft(TrainingSettings(), out_dir=tmp_path / "a", callbacks=(_StopAt(4),), **common)
    assert (tmp_path / "a" / "checkpoints" / "checkpoint-3").is_dir() and not (tmp_path / "a" / "manifest.json").exists()
    resumed = run_train_sft(TrainingSettings(), out_dir=tmp_path / "a", **common)
    assert resumed["resumed_from"].endswith("checkpoint-3") and resumed["counts"]["steps"] == 6
    straight = run_train_sft(TrainingSettings(), out_dir=tmp_path / "b", **common)
    assert straight["resumed_from"] is None
    first, second = _adapter_tensors(tmp_path / "a" / "adapter"), _adapter_tensors(tmp_path / "b" / "adapter")
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=1e-5, atol=1e-6)
    # Checkpoints of another configuration are never resumed into this one.
    other = run_train_sft(TrainingSettings(), out_dir=tmp_path / "a", **{**common, "sft_args": {**args, "max_steps": 2}})
    assert other["resumed_from"] is None and other["counts"]["steps"] == 2


class _PoisonLoRA(TrainerCallback):
    """Sets every LoRA B weight to nan after ``step``, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if "lora_B" in name:
                        param.fill_(float("nan"))


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_model_dir, tmp_path):
    train = write_sft_rows(tmp_path / "train.jsonl")
    args = {**SFT_TRAIN_ARGS, "per_device_train_batch_size": 4, "max_steps": 6, "save_steps": 2}
    with pytest.raises(TrainingError) as error:
        run_train_sft(TrainingSettings(), model_dir=tiny_model_dir, train_path=train, out_dir=tmp_path / "out",
                      sft_args=args, lora_args=LORA_ARGS, callbacks=(_PoisonLoRA(3),))
    message = str(error.value)
    assert "non-finite at step 4" in message and "checkpoint-2" in message
    good = _adapter_tensors(tmp_path / "out" / "checkpoints" / "checkpoint-2")
    assert all(torch.isfinite(t).all() for t in good.values())
    assert not (tmp_path / "out" / "checkpoints" / "checkpoint-4").exists()
    assert not (tmp_path / "out" / "adapter").exists() and not (tmp_path / "out" / "manifest.json").exists()


def test_an_adapter_on_fewer_modules_than_planned_is_refused(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from stage1.hf.lora import build_lora_config, check_trained_modules
    from stage1.hf.models import load_model

    drifted = get_peft_model(load_model(tiny_model_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with pytest.raises(TrainingError, match="gate_proj has LoRA weights in 0 of 2 layers"):
        check_trained_modules(drifted, build_lora_config({}), num_layers=2)
    planned = get_peft_model(load_model(tiny_model_dir), build_lora_config({"r": 4}))
    assert check_trained_modules(planned, build_lora_config({"r": 4}), num_layers=2) == tuple(sorted(QWEN2_PROJECTIONS))


def test_a_finished_run_is_never_trained_past_max_steps_and_other_fingerprints_start_over(tiny_model_dir, tmp_path, caplog):
    """Rerunning a finished stage (its last checkpoint at max_steps) finishes from that checkpoint
    without a step more (transformers resumed checkpoint-6 of 6 into a step 7 when 6 steps are not
    whole epochs: 16 rows at batch 4); a new stage fingerprint (an upstream stage rerun) or
    resume=False (``--force``) discards the checkpoints, with a warning, and trains from scratch
    to the same weights."""
    train = write_sft_rows(tmp_path / "train.jsonl")
    args = {**SFT_TRAIN_ARGS, "per_device_train_batch_size": 4, "max_steps": 6, "save_steps": 3}
    common = dict(model_dir=tiny_model_dir, train_path=train, out_dir=tmp_path / "out", sft_args=args, lora_args=LORA_ARGS)
    first = run_train_sft(TrainingSettings(), **common)
    weights = _adapter_tensors(tmp_path / "out" / "adapter")
    assert first["resumed_from"] is None and first["counts"]["steps"] == 6

    again = run_train_sft(TrainingSettings(), **common)
    assert again["resumed_from"].endswith("checkpoint-6") and again["counts"]["steps"] == 6
    assert again["train_seconds"] == 0.0 and again["loss"] == first["loss"]
    assert not (tmp_path / "out" / "checkpoints" / "checkpoint-7").exists()
    for name, tensor in _adapter_tensors(tmp_path / "out" / "adapter").items():
        assert torch.equal(tensor, weights[name]), name

    for changed in ({"stage_fingerprint": "upstream rerun"}, {"stage_fingerprint": "upstream rerun", "resume": False}):
        caplog.clear()
        rerun = run_train_sft(TrainingSettings(), **changed, **common)
        assert rerun["resumed_from"] is None and rerun["counts"]["steps"] == 6, changed
        assert "discarding 2 checkpoint(s)" in caplog.text, changed
        for name, tensor in _adapter_tensors(tmp_path / "out" / "adapter").items():
            torch.testing.assert_close(tensor, weights[name], rtol=1e-5, atol=1e-6)
