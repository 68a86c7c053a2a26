"""Bugs injected one at a time at the DPO trainer's boundary, each caught by a runtime method check
before a single optimizer step (the cheap injections; the ones that need training are in
tests/integration/test_method_harness.py).

Each test runs ``run_train_dpo`` on the tiny base model (the DPO-only call: its reference is the
base, the policy's starting point) with the bug monkeypatched in, and shows the run stops with a
``MethodCheckError`` naming the check, writing no adapter and no manifest.
"""

from __future__ import annotations

import pytest

from stage1.core.errors import EXIT_GATE
from stage1.core.method_checks import MethodCheckError
from stage1.train.settings import TrainingSettings
from tests.integration.tiny_training import DPO_TRAIN_ARGS, LORA_ARGS, write_pairs


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs"))


def _run(model_dir, pair_files, out, settings=TrainingSettings(min_optimizer_steps=0), **args):
    from stage1.train.dpo import run_train_dpo

    train, evaluation = pair_files
    return run_train_dpo(settings, model_dir=model_dir, train_path=train, eval_path=evaluation, out_dir=out,
                         dpo_args={**DPO_TRAIN_ARGS, "max_steps": 1, **args}, lora_args=LORA_ARGS)


def _patch_rows(monkeypatch, change):
    """Rewrite every row of both datasets as the trainer prepares them: the trainer's input boundary."""
    from stage1.train.dpo_trainer import PreTokenizedDPOTrainer

    prepare = PreTokenizedDPOTrainer._prepare_dataset

    def patched(self, dataset, processing_class, args, dataset_name):
        return prepare(self, dataset, processing_class, args, dataset_name).map(change)

    monkeypatch.setattr(PreTokenizedDPOTrainer, "_prepare_dataset", patched)


def _assert_stopped(error, check: str, out):
    assert f"method check {check} failed" in str(error.value)
    assert error.value.exit_code == EXIT_GATE
    assert not (out / "manifest.json").exists() and not (out / "adapter").exists()
    assert not list((out / "checkpoints").glob("checkpoint-*")) if (out / "checkpoints").exists() else True


def test_chosen_and_rejected_swapped_at_the_trainer_boundary_stop_the_run(tiny_model_dir, pair_files, tmp_path, monkeypatch):
    _patch_rows(monkeypatch, lambda row: {"chosen_ids": row["rejected_ids"], "rejected_ids": row["chosen_ids"]})
    with pytest.raises(MethodCheckError) as error:
        _run(tiny_model_dir, pair_files, tmp_path / "dpo")
    _assert_stopped(error, "rows_decode", tmp_path / "dpo")
    assert "field 'chosen'" in str(error.value) and "swapped?" in str(error.value)


def test_loss_on_the_prompt_tokens_stops_the_run(tiny_model_dir, pair_files, tmp_path, monkeypatch):
    """The prompt moved into both completions: TRL's completion mask would then train on it."""
    _patch_rows(monkeypatch, lambda row: {"prompt_ids": row["prompt_ids"][:1], "chosen_ids": row["prompt_ids"][1:] + row["chosen_ids"],
                                          "rejected_ids": row["prompt_ids"][1:] + row["rejected_ids"]})
    with pytest.raises(MethodCheckError) as error:
        _run(tiny_model_dir, pair_files, tmp_path / "dpo")
    _assert_stopped(error, "rows_decode", tmp_path / "dpo")
    assert "field 'prompt'" in str(error.value)


def test_a_frozen_adapter_stops_the_run_before_training(tiny_model_dir, pair_files, tmp_path, monkeypatch):
    """Frozen as the trainer is built: the trained-modules check (``check_trained_modules``) finds
    no trainable LoRA weight before the method checks run; either way no step is spent."""
    from stage1.core.errors import TrainingError
    from stage1.train.dpo_trainer import PreTokenizedDPOTrainer

    build = PreTokenizedDPOTrainer.__init__

    def frozen(self, *args, **kwargs):
        build(self, *args, **kwargs)
        for param in self.model.parameters():
            param.requires_grad_(False)

    monkeypatch.setattr(PreTokenizedDPOTrainer, "__init__", frozen)
    with pytest.raises(TrainingError, match="the adapter differs from the plan: .* has LoRA weights in 0 of"):
        _run(tiny_model_dir, pair_files, tmp_path / "dpo")
    assert not (tmp_path / "dpo" / "manifest.json").exists() and not (tmp_path / "dpo" / "adapter").exists()


@pytest.mark.slow  # builds a second tiny model; the faithful versions (base as the reference) are in test_method_harness.py
def test_a_reference_that_is_not_the_policys_start_stops_the_run(tiny_model_dir, pair_files, tmp_path, monkeypatch):
    """The reference handed to TRL is another model than the one DPO starts from (here a tiny model
    of another seed, as the raw base is another model than the SFT model): step-0 loss is off ln 2."""
    from stage1.hf.models import load_model
    from stage1.hf.tiny import build_tiny_qwen
    from stage1.train.dpo_trainer import PreTokenizedDPOTrainer

    other = load_model(build_tiny_qwen(tmp_path / "other", seed=1))
    build = PreTokenizedDPOTrainer.__init__
    monkeypatch.setattr(PreTokenizedDPOTrainer, "__init__", lambda self, *a, **k: build(self, *a, ref_model=other, **k))
    with pytest.raises(MethodCheckError) as error:
        _run(tiny_model_dir, pair_files, tmp_path / "dpo")
    _assert_stopped(error, "step0_loss", tmp_path / "dpo")
    assert "not ln 2" in str(error.value)


@pytest.mark.slow
def test_warn_mode_records_a_failed_check_and_goes_on(tiny_model_dir, pair_files, tmp_path, monkeypatch):
    _patch_rows(monkeypatch, lambda row: {"chosen_ids": row["rejected_ids"], "rejected_ids": row["chosen_ids"]})
    manifest = _run(tiny_model_dir, pair_files, tmp_path / "dpo", settings=TrainingSettings(min_optimizer_steps=0, method_checks="warn"))
    checks = manifest["method_checks"]
    assert checks["mode"] == "warn" and checks["rows_decode"]["passed"] is False and checks["rows_decode"]["mismatches"] == 32
    assert checks["step0_loss"]["passed"] is True and checks["adapter_moved"]["passed"] is True
    assert any("method check rows_decode failed" in warning for warning in manifest["warnings"])
    assert (tmp_path / "dpo" / "adapter").is_dir()


@pytest.mark.slow
def test_a_correct_run_passes_every_check(tiny_model_dir, pair_files, tmp_path):
    manifest = _run(tiny_model_dir, pair_files, tmp_path / "dpo")
    checks = manifest["method_checks"]
    assert checks["mode"] == "error"
    assert {name: checks[name]["passed"] for name in ("rows_decode", "step0_loss", "adapter_moved")} == dict.fromkeys(
        ("rows_decode", "step0_loss", "adapter_moved"), True)
    assert checks["rows_decode"]["rows"] == 16 and checks["step0_loss"]["max_deviation"] < 1e-5
    margin = checks["heldout_margin"]
    assert margin["pairs"] == 4 and margin["passed"] == (margin["mean_margin"] > 0)
    assert margin["mean_margin"] == pytest.approx(manifest["reward_margin"] / manifest["beta"], rel=1e-3, abs=1e-5)
