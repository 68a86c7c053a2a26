"""Runtime checks that a DPO run trained the method it claims to: the pure verdicts.

A pipeline whose plumbing works can still train the wrong thing: chosen and rejected swapped on the
way to the trainer, a reference that is not the policy's starting point, an adapter that never
moved. Each check here takes figures measured by ``stage1.train.dpo_checks`` (plain numbers and
strings) and returns a ``CheckOutcome``; ``enforce`` fails the run on a failed check
(``training.method_checks: error``, a ``MethodCheckError`` naming every failed check) or turns it
into a warning (``warn``). Every outcome, passed or not, goes into the DPO manifest.

The checks:

- ``step0_loss``: at step 0 the policy is the reference, so every pair's sigmoid DPO loss is
  ``-log sigmoid(0) = ln 2``; a reference that is the raw base instead of the SFT model moves it
  (0.597 measured on the tiny model).
- ``adapter_moved``: training changed the trainable weights (a learning rate of 0, a frozen
  adapter or an empty optimizer leave them as they were).
- ``heldout_margin``: on the held-out pairs, read from the pairs file and tokenised apart from the
  trainer's columns, the mean of ``[log pi(chosen) - log pi(rejected)] - [log ref(chosen) - log
  ref(rejected)]`` exceeds ``training.min_heldout_margin`` nats (it is 0 at step 0 by construction).
  A swap at the trainer's input trains the margin the other way.
- ``rows_decode``: the token ids that reach the trainer decode back to the pairs file's prompt,
  chosen and rejected text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stage1.core.errors import GateError

LN2 = math.log(2.0)
MODES = ("error", "warn")
CHECK_NAMES = ("rows_decode", "step0_loss", "adapter_moved", "heldout_margin")


class MethodCheckError(GateError):
    """A runtime method check failed (exit 1, like any other failed gate)."""


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict and the figures it was reached on (``passed`` None: not applicable)."""

    name: str
    passed: bool | None
    message: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "message": self.message, **self.figures}


def step0_loss(losses: Sequence[float], tolerance: float) -> CheckOutcome:
    """Each pair's DPO sigmoid loss at step 0 is ln 2 within ``tolerance`` (inclusive)."""
    if not losses:
        return CheckOutcome("step0_loss", None, "no pair to score at step 0")
    worst = max(losses, key=lambda loss: abs(loss - LN2))
    deviation = abs(worst - LN2)
    figures = {"pairs": len(losses), "mean_loss": sum(losses) / len(losses), "worst_loss": worst,
               "max_deviation": deviation, "tolerance": tolerance, "ln2": LN2}
    if math.isfinite(deviation) and deviation <= tolerance:
        return CheckOutcome("step0_loss", True, f"step-0 loss is ln 2 on {len(losses)} pairs (max deviation {deviation:.2e})", figures)
    return CheckOutcome(
        "step0_loss", False,
        f"step-0 DPO loss {worst:.4f} on one of {len(losses)} pairs, not ln 2 = {LN2:.4f} (tolerance {tolerance:g}): "
        "the reference is not the policy's starting point (is it the raw base instead of the SFT model?)",
        figures,
    )


def adapter_moved(max_abs_change: float, changed_tensors: int, tensors: int) -> CheckOutcome:
    """Training changed at least one trainable weight."""
    figures = {"max_abs_change": max_abs_change, "changed_tensors": changed_tensors, "trainable_tensors": tensors}
    if tensors == 0:
        return CheckOutcome("adapter_moved", False, "no trainable weight: the adapter was frozen, nothing could train", figures)
    if changed_tensors > 0 and max_abs_change > 0.0:
        return CheckOutcome("adapter_moved", True, f"{changed_tensors} of {tensors} trainable tensors moved (max |change| {max_abs_change:.3g})", figures)
    return CheckOutcome(
        "adapter_moved", False,
        f"the DPO adapter did not move: none of its {tensors} trainable tensors differs from its start "
        "(a learning rate of 0, a frozen adapter, or no optimizer step)", figures,
    )


def heldout_margin(margins: Sequence[float], minimum: float | None) -> CheckOutcome:
    """The held-out pairs' mean margin over the reference (nats) exceeds ``minimum`` (None: not checked)."""
    if not margins:
        return CheckOutcome("heldout_margin", None, "no held-out pair to score")
    ordered = sorted(margins)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    mean = sum(margins) / len(margins)
    figures = {"pairs": len(margins), "mean_margin": mean, "median_margin": median,
               "positive_share": sum(m > 0 for m in margins) / len(margins), "min_heldout_margin": minimum}
    if minimum is None:
        return CheckOutcome("heldout_margin", None, f"held-out margin {mean:.4f} nats (not checked: training.min_heldout_margin is null)", figures)
    if mean > minimum:
        return CheckOutcome("heldout_margin", True, f"held-out margin grew to {mean:.4f} nats (> {minimum:g})", figures)
    return CheckOutcome(
        "heldout_margin", False,
        f"the held-out margin [log pi(chosen) - log pi(rejected)] - [log ref(chosen) - log ref(rejected)] is {mean:.4f} nats, "
        f"not above {minimum:g}, on {len(margins)} pairs of the pairs file: DPO did not learn to prefer the chosen "
        "(chosen and rejected swapped on the way to the trainer?)", figures,
    )


@dataclass(frozen=True)
class DecodeMismatch:
    """A row whose decoded ids differ from its pair in the file."""

    split: str
    line: int | None
    field: str  # prompt, chosen or rejected
    decoded: str
    expected: str


def rows_decode(mismatches: Sequence[DecodeMismatch], rows: int) -> CheckOutcome:
    """Every row's ids decode back to its pair's text."""
    figures = {"rows": rows, "mismatches": len(mismatches)}
    if not mismatches:
        return CheckOutcome("rows_decode", True, f"all {rows} trainer rows decode to the pairs file's text", figures)
    first = mismatches[0]
    swapped = first.field in ("chosen", "rejected") and sum(m.field in ("chosen", "rejected") for m in mismatches) >= 2
    where = f"{first.split} line {first.line}" if first.line is not None else first.split
    return CheckOutcome(
        "rows_decode", False,
        f"{len(mismatches)} trainer field(s) do not decode to the pairs file's text; first at {where}, field '{first.field}': "
        f"decoded {first.decoded[:60]!r}, the file has {first.expected[:60]!r}"
        + (" (chosen and rejected swapped?)" if swapped else ""),
        {**figures, "first": {"split": first.split, "line": first.line, "field": first.field}},
    )


def enforce(outcomes: Sequence[CheckOutcome], mode: str, stage: str = "dpo") -> list[str]:
    """Fail on a failed check (``mode="error"``) or return one warning per failed check (``"warn"``).

    Raises:
        MethodCheckError: in ``error`` mode, naming every failed check and what it measured.
        ValueError: ``mode`` is not one of ``MODES``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    failed = [outcome for outcome in outcomes if outcome.passed is False]
    messages = [f"{stage}: method check {outcome.name} failed: {outcome.message}" for outcome in failed]
    if failed and mode == "error":
        raise MethodCheckError("; ".join(messages) + " (training.method_checks: warn lowers these checks to warnings)")
    return messages


def outcomes_to_dict(outcomes: Sequence[CheckOutcome], mode: str) -> dict[str, Any]:
    """The manifest's ``method_checks``: the mode and each check's verdict and figures."""
    return {"mode": mode, **{outcome.name: outcome.to_dict() for outcome in outcomes}}
