"""Bugs in the method injected one at a time, each caught by a runtime check of the run (the ones
that need a trained model; the cheap injections are caught in tests/unit/train/test_dpo_checks.py).

- reference = the base instead of the SFT model, in both hand-offs: the step-0 loss check;
- a DPO that updates nothing (learning rate 0): the adapter-moved check;
- chosen and rejected swapped at the trainer's input, with the checks lowered to warnings: the
  held-out margin computed from the pairs file goes the wrong way (a second, independent catch);

The SFT run and its merge are the session's shared tiny ones (tiny_training). The dpo variant
evaluated on the SFT model is caught on the session's tiny run in test_harness_on_run.py.
"""

from __future__ import annotations

import json

import pytest
from tiny_training import DPO_TRAIN_ARGS, LORA_ARGS, sft_run

from stage1.core.method_checks import MethodCheckError
from stage1.train.dpo import run_train_dpo
from stage1.train.settings import TrainingSettings

pytestmark = pytest.mark.slow

SETTINGS = TrainingSettings(min_optimizer_steps=0)


def _dpo(model_dir, pair_files, out, settings=SETTINGS, **kwargs):
    train, evaluation = pair_files
    args = {**DPO_TRAIN_ARGS, **kwargs.pop("args", {})}
    return run_train_dpo(settings, model_dir=model_dir, train_path=train, eval_path=evaluation, out_dir=out, dpo_args=args,
                         lora_args=LORA_ARGS, **kwargs)


def test_reference_is_the_base_instead_of_the_merged_sft_model(merged_dir, tiny_model_dir, pair_files, tmp_path, monkeypatch):
    from stage1.hf.models import load_model
    from stage1.train.dpo_trainer import PreTokenizedDPOTrainer

    base = load_model(tiny_model_dir)
    build = PreTokenizedDPOTrainer.__init__
    monkeypatch.setattr(PreTokenizedDPOTrainer, "__init__", lambda self, *a, **k: build(self, *a, ref_model=base, **k))
    with pytest.raises(MethodCheckError, match="method check step0_loss failed: step-0 DPO loss .* not ln 2"):
        _dpo(merged_dir, pair_files, tmp_path / "dpo")
    assert not (tmp_path / "dpo" / "manifest.json").exists()


def test_adapter_handoff_step0_is_ln2_and_a_reference_reset_to_the_base_is_caught(tiny_model_dir, pair_files, tmp_path,
                                                                                   tmp_path_factory, monkeypatch):
    """``sft_handoff: adapter``: the reference is TRL's frozen "ref" copy of the SFT adapter. Correct,
    the step-0 loss is ln 2; with that copy's B matrices zeroed the reference is the raw base."""
    import torch

    from stage1.train.dpo_trainer import PreTokenizedDPOTrainer

    adapter = sft_run(tiny_model_dir, tmp_path_factory) / "adapter"
    handoff = TrainingSettings(min_optimizer_steps=0, sft_handoff="adapter")
    good = _dpo(tiny_model_dir, pair_files, tmp_path / "good", handoff, args={"max_steps": 1}, sft_adapter_dir=adapter)
    assert good["method_checks"]["step0_loss"]["passed"] is True and good["method_checks"]["step0_loss"]["max_deviation"] < 1e-5

    build = PreTokenizedDPOTrainer.__init__

    def reference_is_base(self, *args, **kwargs):
        build(self, *args, **kwargs)
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if ".lora_B.ref." in name:
                    param.zero_()

    monkeypatch.setattr(PreTokenizedDPOTrainer, "__init__", reference_is_base)
    with pytest.raises(MethodCheckError, match="step0_loss failed"):
        _dpo(tiny_model_dir, pair_files, tmp_path / "bad", handoff, args={"max_steps": 1}, sft_adapter_dir=adapter)


def test_a_dpo_at_learning_rate_zero_fails_the_adapter_check(tiny_model_dir, pair_files, tmp_path, monkeypatch):
    """The config refuses a learning rate of 0; injected below it (into the DPOConfig the stage
    builds), training runs and moves nothing."""
    from stage1.train import run

    build = run.build_config

    def zero_learning_rate(*args, **kwargs):
        config = build(*args, **kwargs)
        config.learning_rate = 0.0
        return config

    monkeypatch.setattr(run, "build_config", zero_learning_rate)
    with pytest.raises(MethodCheckError, match="method check adapter_moved failed: the DPO adapter did not move") as error:
        _dpo(tiny_model_dir, pair_files, tmp_path / "dpo", args={"max_steps": 2})
    assert "heldout_margin" in str(error.value)  # nothing moved, so the margin did not grow either
    assert not (tmp_path / "dpo" / "manifest.json").exists()


def test_a_swap_at_the_trainer_input_turns_the_file_margin_negative(merged_dir, pair_files, tmp_path, monkeypatch):
    """Warned, not stopped, the swapped run trains; the margin scored from the pairs file (not the
    trainer's swapped columns) then says DPO learnt to prefer the rejected. The correct run's grows."""
    from stage1.train.dpo_trainer import PreTokenizedDPOTrainer

    warn = TrainingSettings(min_optimizer_steps=0, method_checks="warn")
    correct = _dpo(merged_dir, pair_files, tmp_path / "correct", warn)["method_checks"]
    prepare = PreTokenizedDPOTrainer._prepare_dataset

    def swapped(self, dataset, *args):
        return prepare(self, dataset, *args).map(lambda row: {"chosen_ids": row["rejected_ids"], "rejected_ids": row["chosen_ids"]})

    monkeypatch.setattr(PreTokenizedDPOTrainer, "_prepare_dataset", swapped)
    manifest = _dpo(merged_dir, pair_files, tmp_path / "swapped", warn)
    checks = manifest["method_checks"]
    assert correct["heldout_margin"]["passed"] is True and correct["heldout_margin"]["mean_margin"] > 0
    assert checks["rows_decode"]["passed"] is False
    assert checks["heldout_margin"]["passed"] is False and checks["heldout_margin"]["mean_margin"] < 0
    history = json.loads((tmp_path / "swapped" / "log_history.json").read_text())
    assert [entry["rewards/margins"] for entry in history if "loss" in entry][-1] > 0  # TRL's own, on its swapped columns: healthy
    assert sum("method check" in warning for warning in manifest["warnings"]) == 2
