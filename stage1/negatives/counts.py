"""What the negatives maker counts: the plan, the output, what was not made and why, the length
cue per kind, and the floor every kind in the mix must reach.

Pure: counters and strings.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


class LengthBand:
    """Per kind, how often the rejected was longer than the chosen so far (ties half), and whether
    one more negative would push that share further outside ``[low, high]``.

    Every kind is banded: a model must not tell a refusal or a vague answer by its length either
    (their defect is declining and vagueness, which short texts show as well as long ones), and
    runaways (longer) and truncations (shorter) are steered together within ``format_violation``.
    """

    def __init__(self, band: tuple[float, float] | None):
        self.band = band
        self.longer: Counter[str] = Counter()  # twice the score: 2 per longer, 1 per tie
        self.total: Counter[str] = Counter()

    def outside(self, kind: str, chosen_words: int, rejected_words: int) -> bool:
        """Whether this candidate moves its kind's share away from the band (never for the first of a kind)."""
        if self.band is None or not self.total[kind]:
            return False
        step = 2 if rejected_words > chosen_words else 1 if rejected_words == chosen_words else 0
        share = (self.longer[kind] + step) / (2 * (self.total[kind] + 1))
        low, high = self.band
        return (share > high and step == 2) or (share < low and step == 0)

    def lean(self, kind: str) -> int:
        """-1 when the kind's rejecteds have been the longer side so far, +1 the shorter, 0 at even."""
        if not self.total[kind]:
            return 0
        share = self.longer[kind] / (2 * self.total[kind])
        return -1 if share > 0.5 else 1 if share < 0.5 else 0

    def add(self, kind: str, chosen_words: int, rejected_words: int) -> None:
        """One negative of ``kind`` was made."""
        self.longer[kind] += 2 if rejected_words > chosen_words else 1 if rejected_words == chosen_words else 0
        self.total[kind] += 1

    def to_dict(self) -> dict[str, Any]:
        return {kind: {"negatives": self.total[kind], "longer_score": self.longer[kind] / (2 * self.total[kind])}
                for kind in sorted(self.total)}


@dataclass
class NegativeCounts:
    """What was planned, made, and why the rest was not."""

    examples: int = 0
    planned: Counter[str] = field(default_factory=Counter)
    produced: Counter[str] = field(default_factory=Counter)
    not_applicable: Counter[str] = field(default_factory=Counter)
    not_served: Counter[str] = field(default_factory=Counter)  # items a kind was tried on and could not serve
    made_up: Counter[str] = field(default_factory=Counter)  # made in place of a planned kind ahead of its share
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_by_kind: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    methods: Counter[str] = field(default_factory=Counter)
    per_example: Counter[int] = field(default_factory=Counter)
    length_band: LengthBand = field(default_factory=lambda: LengthBand(None))

    def reject(self, kind: str, problem: str) -> None:
        self.rejected[problem] += 1
        self.rejected_by_kind[kind][problem] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "length_band": {"band": None if self.length_band.band is None else list(self.length_band.band),
                            "by_kind": self.length_band.to_dict()},
            "examples": self.examples,
            "negatives": sum(self.produced.values()),
            "planned_by_kind": dict(sorted(self.planned.items())),
            "produced_by_kind": dict(sorted(self.produced.items())),
            "not_applicable_by_kind": dict(sorted(self.not_applicable.items())),
            "items_not_served_by_kind": dict(sorted(self.not_served.items())),
            "made_up_by_kind": dict(sorted(self.made_up.items())),
            "rejected_candidates": dict(sorted(self.rejected.items())),
            "rejected_candidates_by_kind": {kind: dict(sorted(c.items())) for kind, c in sorted(self.rejected_by_kind.items())},
            "methods": dict(sorted(self.methods.items())),
            "negatives_per_example": {str(k): v for k, v in sorted(self.per_example.items())},
        }


#: A kind is held to its floor once this many of its negatives were planned: on a handful of rows a
#: kind that fits none of them is the data, not a fault.
FLOOR_MIN_PLANNED = 20


def _why(kind: str, counts: NegativeCounts) -> str:
    rejected = counts.rejected_by_kind.get(kind) or {}
    reasons = ", ".join(f"{problem} {n}" for problem, n in sorted(rejected.items(), key=lambda kv: -kv[1])[:3])
    why = f"{counts.not_served[kind]} item(s) it could not serve"
    return f"{why}; candidates refused: {reasons}" if reasons else f"{why} (the builder made no candidate)"


def kind_shortfalls(counts: NegativeCounts, weights: dict[str, float], floor: float, share_of: dict[str, str],
                    hints: dict[str, str] | None = None) -> list[str]:
    """One message per kind of the mix (weight > 0, at least ``FLOOR_MIN_PLANNED`` planned) that made
    fewer than ``floor`` times the negatives the mix planned for it, saying why (items it could not serve, candidates refused and
    for what) and ending with the kind's entry in ``hints``, if any. ``share_of`` maps a produced kind
    to the mix weight it counts against (compliance on a declined request spends the refusal share)."""
    planned: Counter[str] = Counter()
    produced: Counter[str] = Counter()
    for kind, n in counts.planned.items():
        planned[share_of.get(kind, kind)] += n
    for kind, n in counts.produced.items():
        produced[share_of.get(kind, kind)] += n
    messages = []
    for kind, weight in weights.items():
        if weight <= 0 or planned[kind] < FLOOR_MIN_PLANNED or produced[kind] >= floor * planned[kind]:
            continue
        hint = (hints or {}).get(kind)
        messages.append(f"{kind}: {produced[kind]} of {planned[kind]} planned negatives made "
                        f"(floor {floor:.0%}): {_why(kind, counts)}" + (f" ({hint})" if hint else ""))
    return messages
