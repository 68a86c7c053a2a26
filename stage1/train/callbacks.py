"""Trainer callbacks shared by SFT and DPO: stop on a non-finite loss, sample now and then, keep the losses."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from stage1.core.errors import TrainingError
from stage1.core.generation import GenerationSettings
from stage1.hf.generation import TransformersBackend
from stage1.io.lineage import ADAPTER_WEIGHTS
from stage1.io.plain import read_json

log = logging.getLogger(__name__)

CHECKED_LOG_KEYS = ("loss", "grad_norm", "train_loss", "eval_loss")


def last_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete, loadable ``checkpoint-N`` folder, or None.

    The Trainer writes ``trainer_state.json`` last and not atomically, so a process killed while
    saving leaves a folder without it (or with a torn one); resuming from that folder would crash or
    restore half a state. Only folders whose trainer state reads back count, whose adapter weights
    load and are finite (a truncated or NaN adapter is not a state to resume, nor "good"), and
    whose torch files (optimizer, scheduler, RNG) are whole zip archives, as ``torch.save`` writes.
    """
    import re

    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    candidates = []
    for path in folder.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            candidates.append((int(match.group(1)), path))
    for _, path in sorted(candidates, reverse=True):
        try:
            read_json(path / "trainer_state.json")
        except (OSError, ValueError):
            continue
        problem = checkpoint_problem(path)
        if problem is not None:
            log.warning("skipping %s: %s", path, problem)
            continue
        return path
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from, or None when it can."""
    import zipfile

    weights = path / ADAPTER_WEIGHTS
    if weights.exists():
        import torch
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(weights))
        except Exception as error:  # safetensors raises its own SafetensorError, or OSError, on a torn file
            return f"its adapter weights do not load ({error})"
        bad = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if bad:
            return f"its adapter weights are not finite ({bad[0]}{', ...' if len(bad) > 1 else ''})"
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        if (path / name).exists() and not zipfile.is_zipfile(path / name):
            return f"{name} is truncated or not a torch file"
    return None


class NonFiniteLossGuard(TrainerCallback):
    """Stop training with a clear error at the first nan/inf loss or gradient.

    Gradients are checked before each optimizer step, so the bad update is never applied and the
    checkpoints already written stay good; logged losses are checked as a second line (fp16 loss
    scaling produces inf gradients on purpose, so with fp16 only the logged loss is checked).
    """

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16 or model is None:
            return
        import torch

        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            raise self._error(args, state.global_step + 1, "the gradient")

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in CHECKED_LOG_KEYS:
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise self._error(args, state.global_step, f"the logged {key} ({value})")

    @staticmethod
    def _error(args, step: int, what: str) -> TrainingError:
        good = last_checkpoint(args.output_dir)
        kept = f"the last good checkpoint is {good}" if good else "no good checkpoint was written before it"
        return TrainingError(
            f"{what} became non-finite at step {step}; training stopped and {kept}. "
            f"Lower the learning rate ({args.learning_rate}) or check the data, then run again to resume."
        )


class SampleGenerations(TrainerCallback):
    """Every ``every`` steps, greedy-generate for a few training prompts and log what comes out.

    ``generate`` maps (model, prompts) to one record per prompt (a dict); it is called on the main
    process only, with the model in eval mode and no gradients.
    """

    def __init__(self, prompts: Sequence[str], every: int, generate: Callable[[Any, list[str]], list[dict[str, Any]]]):
        self.prompts = list(prompts)
        self.every = every
        self.generate = generate
        self.samples: list[dict[str, Any]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every <= 0 or state.global_step % self.every or not state.is_world_process_zero or model is None:
            return
        import torch

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                outputs = self.generate(model, self.prompts)
        finally:
            model.train(was_training)
        for prompt, output in zip(self.prompts, outputs):
            record = {"step": state.global_step, "prompt": prompt, **output}
            self.samples.append(record)
            # One readable line (the full record is kept in self.samples): prompt → response (stop reason)
            log.info("sample at step %d: %r → %r (%s)", state.global_step, prompt, output.get("response", output),
                     output.get("stop_reason", "?"))


def loss_history(log_history: list[dict[str, Any]], key: str = "loss") -> list[tuple[int, float]]:
    """(step, value) of every logged ``key``, in order."""
    return [(int(entry["step"]), float(entry[key])) for entry in log_history if key in entry and "step" in entry]


def greedy_completions(model, tokenizer, prompts: Sequence[str], max_new_tokens: int) -> list[dict[str, Any]]:
    """Greedy completions through the shared generation backend (string stops, parse_completion)."""
    model = getattr(model, "module", model)  # a DDP wrapper has no generate()
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=max(1, len(prompts)), do_sample=False)
    return [
        {"response": g.response, "stop_reason": g.stop_reason, "completion_text": g.completion_text}
        for g in TransformersBackend(model, tokenizer).generate(list(prompts), settings)
    ]


class LogToLogger(TrainerCallback):
    """Trainer logs go to the ``stage1`` logger (the CLI decides what reaches the terminal)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            # DEBUG: the run log keeps every step; the terminal shows the live metrics table instead.
            log.debug("step %d: %s", state.global_step, {k: round(v, 5) if isinstance(v, float) else v for k, v in logs.items()})


def quiet_trainer(trainer) -> None:
    """Replace the trainer's own printing with ``LogToLogger``: only the CLI prints."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LogToLogger())
