"""Sample generations during training are logged as one readable line each."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from stage1.train import callbacks
from stage1.train.callbacks import SampleGenerations


class _Model:
    training = True

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_each_sample_is_one_line_prompt_response_and_stop_reason(monkeypatch):
    prompt = "Instruction: What is the capital of France?\nResponse:"
    callback = SampleGenerations([prompt], every=5, generate=lambda model, prompts: [
        {"response": "Paris.", "stop_reason": "end", "completion_text": " Paris.\nEND"} for _ in prompts])
    state = SimpleNamespace(global_step=10, is_world_process_zero=True)
    model = _Model()
    lines = _Lines()  # on the module's own logger: other tests may stop "stage1" propagating to the root
    monkeypatch.setattr(callbacks.log, "handlers", [lines])
    monkeypatch.setattr(callbacks.log, "level", logging.INFO)
    callback.on_step_end(None, state, None, model=model)
    (line,) = [text for text in lines.lines if "sample at step" in text]
    assert line == f"sample at step 10: {prompt!r} → 'Paris.' (end)"
    assert callback.samples == [{"step": 10, "prompt": prompt, "response": "Paris.", "stop_reason": "end",
                                 "completion_text": " Paris.\nEND"}] and model.training
