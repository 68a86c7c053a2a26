"""Which checkpoint training resumes from, and which one an error calls good: never one whose adapter
weights fail to load or are not finite, nor one whose torch files are truncated."""

from __future__ import annotations

import json
import types

import pytest
import torch
from safetensors.torch import save_file

from stage1.core.errors import TrainingError
from stage1.io.lineage import ADAPTER_WEIGHTS
from stage1.train.callbacks import NonFiniteLossGuard, checkpoint_problem, last_checkpoint


def _checkpoint(root, step, *, weights=None, raw_weights=None, optimizer=None):
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if weights is not None:
        save_file({"lora_A": weights}, str(folder / ADAPTER_WEIGHTS))
    if raw_weights is not None:
        (folder / ADAPTER_WEIGHTS).write_bytes(raw_weights)
    if optimizer is not None:
        torch.save({"state": {}}, folder / "optimizer.pt")
        if optimizer == "truncated":
            data = (folder / "optimizer.pt").read_bytes()
            (folder / "optimizer.pt").write_bytes(data[: len(data) // 2])
    return folder


def test_a_checkpoint_with_truncated_adapter_weights_is_skipped_like_a_torn_one(tmp_path):
    good = _checkpoint(tmp_path, 4, weights=torch.ones(3))
    whole = (good / ADAPTER_WEIGHTS).read_bytes()
    _checkpoint(tmp_path, 8, raw_weights=whole[: len(whole) - 5])
    assert last_checkpoint(tmp_path) == good
    assert "do not load" in checkpoint_problem(tmp_path / "checkpoint-8")


def test_a_checkpoint_with_nan_weights_is_never_resumed_from(tmp_path):
    good = _checkpoint(tmp_path, 4, weights=torch.ones(3))
    _checkpoint(tmp_path, 8, weights=torch.tensor([1.0, float("nan"), 0.0]))
    assert last_checkpoint(tmp_path) == good
    assert "not finite (lora_A)" in checkpoint_problem(tmp_path / "checkpoint-8")


def test_a_checkpoint_with_a_truncated_optimizer_file_is_skipped(tmp_path):
    good = _checkpoint(tmp_path, 4, weights=torch.ones(3), optimizer="whole")
    _checkpoint(tmp_path, 8, weights=torch.ones(3), optimizer="truncated")
    assert checkpoint_problem(good) is None
    assert last_checkpoint(tmp_path) == good


def test_the_non_finite_loss_error_never_calls_a_nan_checkpoint_good(tmp_path):
    _checkpoint(tmp_path, 8, weights=torch.tensor([float("inf")]))
    args = types.SimpleNamespace(output_dir=str(tmp_path), learning_rate=1e-3, fp16=False)
    state = types.SimpleNamespace(global_step=9)
    with pytest.raises(TrainingError) as error:
        NonFiniteLossGuard().on_log(args, state, None, logs={"loss": float("nan")})
    assert "checkpoint-8" not in str(error.value) and "no good checkpoint was written before it" in str(error.value)
    good = _checkpoint(tmp_path, 4, weights=torch.zeros(2))
    with pytest.raises(TrainingError, match=f"the last good checkpoint is {good}"):
        NonFiniteLossGuard().on_log(args, state, None, logs={"loss": float("nan")})
