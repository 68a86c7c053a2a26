"""A tiny Qwen2 whose greedy output is scripted per prompt, to test stops through the real ``generate``.

The random tiny model writes gibberish that never says ``END``; this subclass adds a large bonus to
the logit of the next scripted token, so ``generate`` (stop strings, padding, eos handling and all)
runs unchanged while the text it produces is known. A row whose script is exhausted gets eos.
"""

from __future__ import annotations

from transformers import Qwen2ForCausalLM

SCRIPT_BONUS = 1000.0


class ScriptedQwen(Qwen2ForCausalLM):
    """Set ``scripts`` (prompt ids tuple → completion ids) and ``pad_id`` before generating."""

    scripts: dict[tuple[int, ...], list[int]]
    pad_id: int

    def forward(self, input_ids=None, **kwargs):
        output = super().forward(input_ids=input_ids, **kwargs)
        if input_ids.shape[1] > 1:  # prefill: find each row's script by its unpadded prompt ids
            self._rows = [self.scripts.get(tuple(t for t in row if t != self.pad_id), []) for row in input_ids.tolist()]
            self._step = 0
        logits = output.logits
        for row, script in enumerate(self._rows):
            token = script[self._step] if self._step < len(script) else self.pad_id
            logits[row, -1, token] += SCRIPT_BONUS
        self._step += 1
        return output


def load_scripted(model_dir, tokenizer, scripts: dict[str, str]) -> ScriptedQwen:
    """The tiny model from ``model_dir`` scripted to answer each prompt with its completion text."""
    from stage1.core.masking import encode_text

    model = ScriptedQwen.from_pretrained(model_dir).eval()
    model.pad_id = tokenizer.pad_token_id
    model.scripts = {tuple(encode_text(tokenizer, p)): encode_text(tokenizer, c) for p, c in scripts.items()}
    return model
