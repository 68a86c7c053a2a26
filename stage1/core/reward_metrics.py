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
    by_kind: dict[str, tuple[list[float], list[float]]] = {}
    for kind, c, r in zip(kinds, chosen, rejected):
        by_kind.setdefault(kind, ([], []))
        by_kind[kind][0].append(c)
        by_kind[kind][1].append(r)
    return {
        "overall": summarize(chosen, rejected).to_dict(),
        "by_kind": {kind: summarize(*values).to_dict() for kind, values in sorted(by_kind.items())},
    }
