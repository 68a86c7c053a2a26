"""Rule-based negatives of five kinds, seeded and checked to be worse than the chosen answer.

A request marked ``refusal_expected`` gets ``complied_when_refusal_expected`` (a compliant
opening) in place of ``unwarranted_refusal``.

- ``settings``: ``NegativeSettings`` and the kind mix;
- ``mix``: which kinds each example gets (the declared mix, honoured);
- ``factual``, ``format_violation``, ``templates``: how each kind is built;
- ``phrasing``: what refusals and vague answers open with, and at what length (no surface cue);
- ``candidate``: one example as the builders see it, and a candidate negative;
- ``counts``: what is counted, the length band, and the floor every kind must reach;
- ``donors``: other examples' answers and instructions to borrow, and how often each is borrowed;
- ``repeats``: how often each rejected string has been used, in fixed memory;
- ``core``: the streaming maker and its checks;
- ``stage``: ``run_negatives``, the file-in, file-out stage.
"""

from stage1.negatives.core import DonorPool, NegativeCounts, NegativeMaker, generate_negatives
from stage1.negatives.settings import NegativeMix, NegativeSettings
from stage1.negatives.stage import run_negatives

__all__ = [
    "DonorPool",
    "NegativeCounts",
    "NegativeMaker",
    "NegativeMix",
    "NegativeSettings",
    "generate_negatives",
    "run_negatives",
]
