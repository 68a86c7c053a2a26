"""The DPO stage's runtime method checks: what each one measures on the trainer and the model.

The verdicts are pure (``stage1.core.method_checks``); this module measures their figures:

- before training (the model is still at its starting point, even when a checkpoint is resumed
  later): the trainer's rows decoded against the pairs file, each of the first ``STEP0_PAIRS``
  pairs' DPO loss through the trainer's own loss (so through its own reference), and that there is
  something to train;
- after training: how far the trainable weights moved from the snapshot taken before, and the
  held-out margin over the reference on the eval pairs as the pairs **file** states them, tokenised
  here and never taken from the trainer's columns (which a swap would also swap).

``DPOMethodChecks`` runs them in that order and applies ``training.method_checks``: in ``error``
mode a failed check before training stops the stage before any step is spent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stage1.core import method_checks as checks
from stage1.core.masking import encode_text
from stage1.core.records import RecordList, record_line
from stage1.train.data import PreferenceRows
from stage1.train.logprobs import completion_log_probs
from stage1.train.settings import TrainingSettings

log = logging.getLogger(__name__)

#: Pairs whose step-0 loss is measured one by one (one pair per forward: no padding, and a mean
#: over pairs cannot hide a pair off ln 2 behind another off the other way).
STEP0_PAIRS = 8


def decode_mismatches(tokenizer, dataset, pairs: RecordList, indices: tuple[int, ...], split: str) -> list[checks.DecodeMismatch]:
    """Fields of the trainer's rows whose ids do not decode to their pair's text in the file.

    ``dataset[i]`` was built from ``pairs[indices[i]]``; completions must end with the eos.
    """
    eos = tokenizer.eos_token_id
    found = []
    for row, index in zip(dataset, indices):
        pair = pairs[index]
        for name, key, eos_ended in (("prompt", "prompt_ids", False), ("chosen", "chosen_ids", True), ("rejected", "rejected_ids", True)):
            ids = list(row[key])
            ended = not eos_ended or (bool(ids) and ids[-1] == eos)
            text = tokenizer.decode(ids[:-1] if eos_ended and ended else ids, skip_special_tokens=False,
                                    clean_up_tokenization_spaces=False)
            expected = getattr(pair, name)
            if text != expected or not ended:
                found.append(checks.DecodeMismatch(split, record_line(pairs, index), name, text, expected))
    if len(dataset) != len(indices):
        found.append(checks.DecodeMismatch(split, None, "rows", f"{len(dataset)} rows", f"{len(indices)} pairs kept"))
    return found


def step0_losses(trainer, count: int = STEP0_PAIRS) -> list[float]:
    """The sigmoid DPO loss of each of the first ``count`` training pairs, through the trainer's
    own ``compute_loss`` (its reference model, adapter or precomputed log-probabilities), in eval
    mode (no dropout) and without a gradient. Other loss terms (``dpo.loss_type: [sigmoid, sft]``)
    and TRL's weighting are switched off for these calls: ln 2 is the sigmoid term's value when the
    policy is the reference, whatever the configured loss adds. No random number is drawn."""
    import torch

    model, dataset = trainer.model, trainer.train_dataset
    saved = (trainer.loss_types, trainer.loss_weights, trainer.use_weighting, model.training)
    trainer.loss_types, trainer.loss_weights, trainer.use_weighting = ["sigmoid"], [1.0], False
    model.eval()
    try:
        losses = []
        for index in range(min(count, len(dataset))):
            batch = trainer._prepare_inputs(trainer.data_collator([dataset[index]]))
            with torch.no_grad():
                losses.append(float(trainer.compute_loss(model, batch)))
        return losses
    finally:
        trainer.loss_types, trainer.loss_weights, trainer.use_weighting = saved[:3]
        model.train(saved[3])
        trainer._metrics["eval"].clear()  # compute_loss logged these calls' rewards as eval metrics


def trainable_snapshot(model) -> dict[str, Any]:
    """A CPU copy of every trainable tensor (the LoRA weights: a few MB tiny, under 1 GB for 32B)."""
    return {name: param.detach().to("cpu", copy=True) for name, param in model.named_parameters() if param.requires_grad}


def movement(model, snapshot: dict[str, Any]) -> tuple[float, int]:
    """The largest absolute change of any snapshotted weight, and how many tensors changed."""
    current = dict(model.named_parameters())
    largest, changed = 0.0, 0
    for name, before in snapshot.items():
        delta = float((current[name].detach().to("cpu").float() - before.float()).abs().max())
        largest = max(largest, delta)
        changed += delta > 0.0
    return largest, changed


def file_margins(model, tokenizer, pairs: RecordList, *, max_length: int | None, batch_size: int) -> tuple[list[float], int]:
    """Each pair's margin ``[log pi(c) - log pi(r)] - [log ref(c) - log ref(r)]`` (nats), from the
    pairs file's text, and how many pairs were left out for being longer than ``max_length``.

    Tokenised here as the format's contract states it (prompt ids, then completion ids, then eos:
    ``render_prompt`` ends at the colon so the two concatenate exactly), not read from the trainer.
    The reference is the model's frozen ``"ref"`` adapter when it has one, else the model with its
    adapter disabled: the policy's starting point in both hand-offs.
    """
    import torch
    from trl.trainer.utils import use_adapter


    eos, pad = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    sequences, skipped = [], 0
    for pair in pairs:
        prompt = encode_text(tokenizer, pair.prompt)
        sides = [prompt + encode_text(tokenizer, text) + [eos] for text in (pair.chosen, pair.rejected)]
        if max_length is not None and max(len(ids) for ids in sides) > max_length:
            skipped += 1
            continue
        sequences.append([(ids, len(prompt)) for ids in sides])
    device = next(model.parameters()).device
    reference_adapter = "ref" if "ref" in getattr(model, "peft_config", {}) else None
    margins: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(sequences), batch_size):
            rows = [side for pair in sequences[start : start + batch_size] for side in pair]  # c0, r0, c1, r1, ...
            width = max(len(ids) for ids, _ in rows)
            batch = {
                "input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows], device=device),
                "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows], device=device),
                "completion_mask": torch.tensor([[0] * cut + [1] * (len(ids) - cut) + [0] * (width - len(ids)) for ids, cut in rows],
                                                device=device),
            }
            with torch.no_grad():
                policy = completion_log_probs(model, batch).float().cpu()
                with use_adapter(model, reference_adapter):
                    reference = completion_log_probs(model, batch).float().cpu()
            shift = (policy - reference).view(-1, 2)
            margins += (shift[:, 0] - shift[:, 1]).tolist()
    finally:
        model.train(was_training)
    return margins, skipped


class DPOMethodChecks:
    """The four checks of one DPO training, in the order a run meets them."""

    def __init__(self, settings: TrainingSettings, tokenizer, splits: dict[str, tuple[Path, RecordList, PreferenceRows]]):
        self.settings = settings
        self.tokenizer = tokenizer
        self.splits = splits
        self.outcomes: list[checks.CheckOutcome] = []
        self.warnings: list[str] = []
        self.snapshot: dict[str, Any] = {}

    def _enforce(self, outcomes: list[checks.CheckOutcome]) -> None:
        self.outcomes += outcomes
        for outcome in outcomes:
            log.info("dpo: method check %s: %s", outcome.name, outcome.message)
        for message in checks.enforce(outcomes, self.settings.method_checks):
            log.warning(message)
            self.warnings.append(message)

    def before_training(self, trainer) -> None:
        """Rows decode, step-0 loss, something to train; snapshot the trainable weights.

        Raises:
            MethodCheckError: a check failed under ``training.method_checks: error``.
        """
        mismatches, rows = [], 0
        for split, dataset in (("train", trainer.train_dataset), ("eval", trainer.eval_dataset)):
            _, pairs, prepared = self.splits[split]
            mismatches += decode_mismatches(self.tokenizer, dataset, pairs, prepared.indices, split)
            rows += len(dataset)
        self.snapshot = trainable_snapshot(trainer.model)
        found = [checks.rows_decode(mismatches, rows), checks.step0_loss(step0_losses(trainer), self.settings.step0_loss_tolerance)]
        if not self.snapshot:
            found.append(checks.adapter_moved(0.0, 0, 0))
        self._enforce(found)

    def after_training(self, trainer, *, max_length: int | None) -> dict[str, Any]:
        """Adapter moved, held-out margin; returns the manifest's ``method_checks``.

        Raises:
            MethodCheckError: a check failed under ``training.method_checks: error``.
        """
        found = []
        if self.snapshot:
            largest, changed = movement(trainer.model, self.snapshot)
            found.append(checks.adapter_moved(largest, changed, len(self.snapshot)))
        _, pairs, _ = self.splits["eval"]
        margins, skipped = file_margins(trainer.model, self.tokenizer, pairs, max_length=max_length,
                                        batch_size=self.settings.reward_eval_batch_size)
        margin = checks.heldout_margin(margins, self.settings.min_heldout_margin)
        found.append(checks.CheckOutcome(margin.name, margin.passed, margin.message, {**margin.figures, "skipped_overlong": skipped}))
        self._enforce(found)
        return checks.outcomes_to_dict(self.outcomes, self.settings.method_checks)
