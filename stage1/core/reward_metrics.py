"""DPO implicit-reward summaries, overall and per negative kind. Pure: lists of floats in, dicts out.

The implicit reward of a completion y for prompt x is ``beta * (log pi(y|x) - log pi_ref(y|x))``
(Rafailov et al. 2023, arXiv:2305.18290 §5). A pair counts as correct when the chosen reward is
strictly above the rejected one, so at step 0 (policy == reference, every reward 0) the accuracy is
0, not 0.5: ties are not wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RewardSummary:
    """Reward statistics over a set of pairs."""

    count: int
    reward_accuracy: float  # share of pairs with chosen reward > rejected reward
    mean_margin: float  # mean of chosen reward - rejected reward
    mean_chosen_reward: float
    mean_rejected_reward: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(chosen: Sequence[float], rejected: Sequence[float]) -> RewardSummary:
    """Raises: ValueError for empty or unequal inputs."""
    if len(chosen) != len(rejected):
        raise ValueError(f"{len(chosen)} chosen rewards but {len(rejected)} rejected ones")
    if not chosen:
        raise ValueError("no pairs to summarise")
    count = len(chosen)
    wins = sum(1 for c, r in zip(chosen, rejected) if c > r)
    return RewardSummary(
        count=count,
        reward_accuracy=wins / count,
        mean_margin=sum(c - r for c, r in zip(chosen, rejected)) / count,
        mean_chosen_reward=sum(chosen) / count,
        mean_rejected_reward=sum(rejected) / count,
    )


def summarize_by_kind(kinds: Sequence[str], chosen: Sequence[float], rejected: Sequence[float]) -> dict[str, Any]:
    """``{"overall": {...}, "by_kind": {kind: {...}}}`` with kinds in sorted order.

    Raises:
        ValueError: inputs of different lengths, or none.
    """
    if not (len(kinds) == len(chosen) == len(rejected)):
        raise ValueError("kinds, chosen and rejected must have the same length")
    return {"overall": summarize(chosen, rejected).to_dict(), "by_kind": summarize_by_group(kinds, chosen, rejected)}


def summarize_by_group(groups: Sequence[str], chosen: Sequence[float], rejected: Sequence[float]) -> dict[str, dict[str, Any]]:
    """``{group: RewardSummary dict}`` in sorted order: ``summarize_by_kind``'s breakdown for any label
    (the pair's negative source, say).

    Raises:
        ValueError: inputs of different lengths.
    """
    if not (len(groups) == len(chosen) == len(rejected)):
        raise ValueError("groups, chosen and rejected must have the same length")
    grouped: dict[str, tuple[list[float], list[float]]] = {}
    for group, c, r in zip(groups, chosen, rejected):
        grouped.setdefault(group, ([], []))
        grouped[group][0].append(c)
        grouped[group][1].append(r)
    return {group: summarize(*values).to_dict() for group, values in sorted(grouped.items())}


@dataclass(frozen=True)
class LogProbShift:
    """How far training moved each side's sequence log-probability from the reference.

    A shift is ``log pi(y|x) - log pi_ref(y|x)`` summed over the completion's tokens, in nats. DPO
    only widens the gap between the two sides; it can do so by lowering both (likelihood
    displacement, Razin et al. 2024, arXiv:2410.08847), which ``chosen_fell_share`` shows.
    """

    count: int
    mean_chosen: float
    mean_rejected: float
    chosen_fell_share: float  # share of pairs whose chosen log-prob is strictly below the reference's
    rejected_fell_share: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_prob_shift(chosen_rewards: Sequence[float], rejected_rewards: Sequence[float], beta: float) -> LogProbShift:
    """The shifts behind implicit rewards ``beta * shift`` (so ``shift = reward / beta``).

    Raises:
        ValueError: empty or unequal inputs, or ``beta <= 0``.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if len(chosen_rewards) != len(rejected_rewards):
        raise ValueError(f"{len(chosen_rewards)} chosen rewards but {len(rejected_rewards)} rejected ones")
    if not chosen_rewards:
        raise ValueError("no pairs to summarise")
    count = len(chosen_rewards)
    chosen = [value / beta for value in chosen_rewards]
    rejected = [value / beta for value in rejected_rewards]
    return LogProbShift(
        count=count,
        mean_chosen=sum(chosen) / count,
        mean_rejected=sum(rejected) / count,
        chosen_fell_share=sum(1 for value in chosen if value < 0) / count,
        rejected_fell_share=sum(1 for value in rejected if value < 0) / count,
    )


def chosen_drop_warning(shift: LogProbShift, max_drop: float | None) -> str | None:
    """A warning when the mean chosen log-prob fell below the reference by more than ``max_drop`` nats
    (strictly more; ``None`` never warns), else None."""
    if max_drop is None or shift.mean_chosen >= -max_drop:
        return None
    return (
        f"the chosen answers' mean log-prob fell {-shift.mean_chosen:.3f} nats below the reference "
        f"(limit {max_drop:g}; {shift.chosen_fell_share:.0%} of pairs fell): DPO is lowering the answers it "
        "should prefer; consider dpo.loss_type: [sigmoid, sft] with dpo.loss_weights (README, DPO diagnostics)"
    )
