"""Fidelity of the SFT model as the next stage loads it.

The model DPO trains on, and the model evaluation scores as ``sft``, must be the SFT model that was
trained: the base held in its training quantisation with the live adapter. A merge re-loaded in
nf4 is a fresh quantisation of the merged weights, and a LoRA delta smaller than one nf4 step snaps
back onto the grid (``merge_mode: dequantized_nf4`` loses almost all of the SFT gain that way). A
check of merged weights held in 16-bit cannot see that, so this module loads each handed-on model
exactly as its stage loads it and compares it with the trained model:

- ``sft_gain_kept``: (base loss - handed-on loss) / (base loss - trained loss), mean token loss on
  the SFT training rows (response tokens only, as SFT trained them);
- ``max_logit_diff``: the largest absolute logit difference on the fixed probe rows.

Below ``training.min_sft_gain_kept`` the stage fails closed (``GateError``); so does a run where SFT
did not lower the loss at all, since then no share of a gain can be measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from stage1.core.errors import GateError

FIDELITY_NAME = "fidelity.json"  # written beside the outputs, also when the gate trips


@dataclass(frozen=True)
class LoadFidelity:
    """One handed-on model, as one stage loads it, against the trained SFT model."""

    loaded_by: str  # "dpo" or "eval" (the stage whose loading is reproduced)
    how: str  # what was loaded: folder, adapter, quantisation, dtype
    mean_loss: float
    sft_gain_kept: float | None  # None when SFT did not lower the loss
    max_logit_diff: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_token_loss(model, rows: list[dict[str, list[int]]]) -> float:
    """Mean cross-entropy over every supervised token (labels != -100) of ``rows``, one row per forward.

    Shapes: each row's ``input_ids`` and ``labels`` are (T,); position t's logits predict token
    t+1. Token-weighted over all rows, as SFT's loss is; no padding, so no mask is needed.
    """
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]], device=device)
            labels = torch.tensor(row["labels"], device=device)[1:]
            logits = model(input_ids=ids).logits[0, :-1].float()
            kept = labels != -100
            if kept.any():
                total += float(torch.nn.functional.cross_entropy(logits[kept], labels[kept], reduction="sum"))
                count += int(kept.sum())
    if count == 0:
        raise ValueError("no supervised tokens to score")
    return total / count


def gain_kept(base_loss: float, trained_loss: float, handed_loss: float) -> float | None:
    """Share of SFT's loss reduction the handed-on model keeps: 1.0 all of it, 0.0 none (pure).

    None when SFT did not lower the loss (no gain to share).

    >>> gain_kept(11.9697, 11.9305, 11.9690)  # doctest: +ELLIPSIS
    0.0178...
    """
    gain = base_loss - trained_loss
    if not math.isfinite(gain) or gain <= 0:
        return None
    return (base_loss - handed_loss) / gain


def check_fidelity(loads: list[LoadFidelity], floor: float, *, base_loss: float, trained_loss: float, fix: str) -> None:
    """Fail closed unless every handed-on model keeps at least ``floor`` of the SFT gain (inclusive).

    Args:
        fix: what to change, named in the error (e.g. ``"set training.merge_mode: 16bit"``).

    Raises:
        GateError: a load keeps less than ``floor``, or SFT lowered no loss to keep. A ``floor`` of 0
            checks nothing.
    """
    if floor <= 0:
        return
    for load in loads:
        if load.sft_gain_kept is None:
            raise GateError(
                f"SFT did not lower the loss on its training rows (base {base_loss:.4f}, trained {trained_loss:.4f}): "
                f"the share of its gain that {load.loaded_by} keeps cannot be measured; train SFT longer or at a higher "
                "learning rate, or set training.min_sft_gain_kept: 0 to hand the model on unchecked"
            )
        if load.sft_gain_kept < floor:
            raise GateError(
                f"the SFT model as {load.loaded_by} loads it ({load.how}) keeps {load.sft_gain_kept:.1%} of the SFT gain "
                f"(loss {load.mean_loss:.4f}; base {base_loss:.4f}, trained {trained_loss:.4f}; max logit difference "
                f"{load.max_logit_diff:.4f}), below training.min_sft_gain_kept {floor:g}: {fix}"
            )
