"""Optimizer steps per training stage: the Trainer's arithmetic by hand, and the warning's wording."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from stage1.config.presets import POOLS_DIR
from stage1.core.errors import ConfigError
from stage1.train.settings import TrainingSettings
from stage1.train.step_plan import log_step_plan, optimizer_steps, step_plan


@pytest.mark.parametrize(
    ("rows", "epochs", "per_device", "processes", "accumulation", "max_steps", "expected"),
    [
        (407, 2, 4, 1, 16, -1, 14),  # 102 batches -> 7 updates per epoch (the last one partial) -> 14
        (407, 2, 4, 2, 16, -1, 8),  # two processes: 51 batches each -> 4 per epoch
        (407, 1.5, 4, 1, 16, -1, 11),  # ceil(7 x 1.5)
        (1096, 1, 2, 1, 32, -1, 18),  # 548 batches -> 17.1 -> 18
        (3, 3, 8, 1, 4, -1, 3),  # fewer rows than a batch: one update per epoch
        (407, 2, 4, 1, 16, 40, 40),  # max_steps replaces the epochs
    ],
)
def test_optimizer_steps_follow_the_trainer_s_arithmetic(rows, epochs, per_device, processes, accumulation, max_steps, expected):
    assert optimizer_steps(rows, epochs, per_device, processes, accumulation, max_steps) == expected


def _args(**changes):
    values = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 16, "num_train_epochs": 2.0, "max_steps": -1}
    return SimpleNamespace(**{**values, **changes})


def test_the_warning_names_accumulation_epochs_and_the_data_size():
    plan = step_plan("sft", 407, _args(), 1, 50)
    assert plan.steps == 14 and plan.effective_batch == 64 and plan.below_floor
    warning = plan.warning()
    for named in ("sft.gradient_accumulation_steps (now 16)", "sft.num_train_epochs (now 2)", "407 rows", "training.min_optimizer_steps 50"):
        assert named in warning
    assert step_plan("dpo", 10, _args(max_steps=10), 1, 50).warning().endswith("raise dpo.max_steps")


def test_a_stage_at_the_floor_is_not_warned_about():
    """The floor is inclusive: steps >= min_optimizer_steps is enough."""
    assert step_plan("sft", 407, _args(), 1, 14).warning() is None
    assert step_plan("sft", 407, _args(), 1, 15).warning() is not None
    assert step_plan("sft", 407, _args(), 1, 0).warning() is None, "0 turns the warning off"


def test_a_training_stage_logs_its_count_and_warns_below_the_floor(caplog):
    log = logging.getLogger("stage1.test_step_plan")
    with caplog.at_level(logging.INFO, logger=log.name):
        log_step_plan(step_plan("sft", 4096, _args(), 1, 50), log)
        log_step_plan(step_plan("dpo", 407, _args(), 1, 50), log)
    (first, second) = caplog.records
    assert first.levelno == logging.INFO and "sft: 128 optimizer steps" in first.getMessage()
    assert second.levelno == logging.WARNING and "below training.min_optimizer_steps" in second.getMessage()


def test_the_floor_is_a_checked_setting():
    assert TrainingSettings().min_optimizer_steps == 50
    with pytest.raises(ConfigError) as raised:
        TrainingSettings(min_optimizer_steps=-1)
    assert raised.value.field == "training.min_optimizer_steps"


def test_plan_gives_the_32b_preset_at_least_its_floor_of_steps_and_no_warning(capsys):
    """The flagship preset describes a run to make: its shipped pool clears training.min_optimizer_steps."""
    import cli

    assert cli.main(["plan", "--config", "qwen2.5-32b"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    steps = {stage: int(shown.split(f"{stage}: ~")[1].split(" optimizer steps")[0]) for stage in ("sft", "dpo")}
    assert min(steps.values()) >= 50, steps
    assert "too few steps" not in shown and "effective batch 64" in shown


def test_plan_warns_on_a_pool_too_small_for_the_floor_and_always_prints_the_counts(capsys):
    import cli

    small = ["--set", f"data.instructions={POOLS_DIR / 'sft' / 'instructions.jsonl'}"]
    assert cli.main(["plan", "--config", "qwen2.5-32b", *small]) == 0, "a warning, not a refusal"
    shown = " ".join(capsys.readouterr().out.split())
    assert "sft: ~14 optimizer steps (~414 rows x 2 epochs / effective batch 64)" in shown
    assert "dpo: ~18 optimizer steps" in shown and "dpo.gradient_accumulation_steps (now 32)" in shown
    assert cli.main(["plan", "--config", "qwen2.5-32b", *small, "--set", "sft.gradient_accumulation_steps=2",
                     "--set", "training.target_effective_batch=8"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "sft: ~104 optimizer steps" in shown and "too few steps: sft" not in shown
    assert cli.main(["plan", "--set", "data.instructions=no/such/pool.jsonl"]) == 0
    assert "optimizer steps unknown until the instruction pool exists" in " ".join(capsys.readouterr().out.split())


def test_plan_counts_each_dpo_arm_on_its_source_s_share_of_the_pairs(capsys):
    import cli

    arms = ["--set", "negatives.source=mixed", "--set", "training.dpo_arms=[rules,policy]", "--set", "negatives.policy_share=0.25"]
    assert cli.main(["plan", "--config", "qwen2.5-32b", *arms]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    dpo = int(shown.split("dpo: ~")[1].split(" rows")[0].split("(~")[1])
    rules = int(shown.split("dpo_rules: ~")[1].split(" rows")[0].split("(~")[1])
    policy = int(shown.split("dpo_policy: ~")[1].split(" rows")[0].split("(~")[1])
    assert (rules, policy) == (int(dpo * 0.75), int(dpo * 0.25))
    assert "too few steps: dpo_policy" in shown and "raise dpo.num_train_epochs" in shown
