"""How many optimizer steps a training stage will take, said before it starts.

A preset's step count depends on the data at hand: the 32B preset's effective batch of 64 over the
tiny 460-instruction pool would give SFT about 14 optimizer steps and DPO about 18, and a fresh DPO
adapter at lr 5e-6 barely moves in 18 steps (the preset trains on the 2,320-instruction pool). ``plan`` and the start of each training stage say the
count and warn below ``training.min_optimizer_steps``, naming what to change.

The arithmetic follows transformers' Trainer: batches per epoch = ceil(rows / (per-device batch x
processes)), optimizer steps per epoch = ceil(batches / gradient_accumulation_steps), a fractional
``num_train_epochs`` rounds the total up, and ``max_steps`` > 0 replaces all of it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stage1.io.plain import text_lines


@dataclass(frozen=True)
class StepPlan:
    """One training stage's optimizer steps and how they come about."""

    stage: str  # "sft" or "dpo" (the TRL section named in advice)
    rows: int  # training rows (SFT examples, or DPO pairs)
    epochs: float
    effective_batch: int
    accumulation: int
    max_steps: int  # > 0 overrides epochs
    steps: int
    floor: int  # training.min_optimizer_steps
    rows_estimated: bool = False  # rows estimated from the pool (``plan``), not counted from the stage's own input
    name: str = ""  # what the summary calls the stage when it is not ``stage`` (a DPO arm: "dpo_rules")

    @property
    def below_floor(self) -> bool:
        return self.steps < self.floor

    def summary(self) -> str:
        """``"sft: 13 optimizer steps (407 rows x 2 epochs / effective batch 64)"``."""
        about = "~" if self.rows_estimated else ""
        how = (f"max_steps {self.max_steps}" if self.max_steps > 0
               else f"{about}{self.rows} rows x {self.epochs:g} epochs / effective batch {self.effective_batch}")
        return f"{self.name or self.stage}: {about}{self.steps} optimizer steps ({how})"

    def warning(self) -> str | None:
        """What to change when the stage takes fewer steps than the floor; None otherwise."""
        if not self.below_floor:
            return None
        if self.max_steps > 0:
            fix = f"raise {self.stage}.max_steps"
        else:
            fix = (f"lower {self.stage}.gradient_accumulation_steps (now {self.accumulation}), raise "
                   f"{self.stage}.num_train_epochs (now {self.epochs:g}), or train on more data (now {self.rows} rows)")
        return (f"{self.summary()} is below training.min_optimizer_steps {self.floor}: an adapter barely moves in so few "
                f"updates; {fix}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "below_floor": self.below_floor}


def optimizer_steps(rows: int, epochs: float, per_device: int, processes: int, accumulation: int, max_steps: int = -1) -> int:
    """Optimizer steps the Trainer takes over ``rows`` (see the module docstring).

    >>> optimizer_steps(407, 2, 4, 1, 16)
    14
    >>> optimizer_steps(407, 2, 4, 1, 16, max_steps=40)
    40
    """
    if max_steps > 0:
        return max_steps
    batches = math.ceil(rows / (per_device * processes))
    per_epoch = max(math.ceil(batches / accumulation), 1)
    return math.ceil(per_epoch * epochs)


def step_plan(stage: str, rows: int, args: Any, processes: int, floor: int, *, estimated: bool = False, name: str = "") -> StepPlan:
    """The StepPlan of a TRL config (or any object with its batch, accumulation, epoch and max_steps fields)."""
    per_device = int(args.per_device_train_batch_size)
    accumulation = int(args.gradient_accumulation_steps)
    epochs = float(args.num_train_epochs)
    max_steps = int(getattr(args, "max_steps", -1) or -1)
    steps = optimizer_steps(rows, epochs, per_device, processes, accumulation, max_steps)
    return StepPlan(stage, rows, epochs, per_device * accumulation * processes, accumulation, max_steps, steps, floor, estimated, name)


def log_step_plan(plan: StepPlan, logger) -> None:
    """Say the count at a stage's start; a warning when it is below the floor."""
    warning = plan.warning()
    if warning:
        logger.warning(warning)
    else:
        logger.info(plan.summary())


def count_rows(path: str | Path) -> int | None:
    """Non-empty lines of a JSONL file, or None when it does not exist (yet)."""
    source = Path(path)
    if not source.is_file():
        return None
    return sum(1 for line in text_lines(source) if line.strip())


def plan_steps_for_config(config) -> list[StepPlan]:
    """Steps of SFT and DPO for a resolved PipelineConfig, before any stage has run (``plan``).

    Rows are estimated from the instruction pool: SFT trains on at most ``max_per_instruction``
    accepted responses per instruction outside the held-out share, and DPO on
    ``negatives.per_example`` pairs per SFT row outside ``pairs.eval_fraction``. Filtering only
    lowers these, so a warning here holds for the real run. Each DPO arm (``training.dpo_arms``)
    gets a plan of its own, on ``negatives.policy_share`` of those pairs (policy) or the rest (rules).
    Empty when the pool is not on disk.
    """
    from types import SimpleNamespace

    pool = count_rows(config.data.instructions)
    if pool is None:
        return []
    training, sft_data = config.section("training"), config.section("sft_data")
    negatives, pairs = config.section("negatives"), config.section("pairs")
    sft_rows = math.floor(pool * sft_data.max_per_instruction * (1 - sft_data.heldout_fraction))
    dpo_rows = math.floor(sft_rows * negatives.per_example * (1 - pairs.eval_fraction))
    # Each DPO arm (training.dpo_arms) trains on its source's share of every group's pairs only.
    arms = [(f"dpo_{source}", math.floor(dpo_rows * (negatives.policy_share if source == "policy" else 1 - negatives.policy_share)))
            for source in training.dpo_arms]
    processes = 1
    plans = []
    for stage, name, rows in (("sft", "", sft_rows), ("dpo", "", dpo_rows), *(("dpo", arm, rows) for arm, rows in arms)):
        section = dict(getattr(config, stage))
        args = SimpleNamespace(
            per_device_train_batch_size=section.get("per_device_train_batch_size", 8),
            gradient_accumulation_steps=section.get("gradient_accumulation_steps", 1),
            num_train_epochs=section.get("num_train_epochs", 3.0), max_steps=section.get("max_steps", -1),
        )
        plans.append(step_plan(stage, rows, args, processes, training.min_optimizer_steps, estimated=True, name=name))
    return plans
