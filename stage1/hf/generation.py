"""Generation behind one small interface: prompts in, parsed ``Generation`` records out.

Two backends share everything but the decoding call: prompt ids (``masking.encode_text``, so
special-token text typed in data never becomes a control token), the stop strings
(``format.STOP_STRINGS``, matched as strings), and reading the result back
(``read_generation``: token ids from the generated ids, text decoded from them, then
``format.parse_completion``). Those shared parts are pure and live in ``stage1.core.generation``.

- ``TransformersBackend`` (default): batched ``model.generate`` with left padding, greedy or
  seeded sampling. A row stops at eos or a stop string (``END`` as a whole line, or a new
  ``Instruction:``). Stops use transformers' ``StopStringCriteria``, built once per backend (its
  constructor scans the whole vocabulary, about 0.3 s for Qwen2's 151k tokens). Sampling draws
  from one ``torch.Generator`` per row inside a logits processor and hands generate a one-hot
  choice, so nothing touches the global torch RNG.
- ``VLLMBackend`` (``stage1.hf.vllm_backend``, optional extra ``stage1[vllm]``): the same prompts as
  token ids, the same stop strings, the same reading back.

Every row is sampled with its own seed (``row_seed``), given by the caller or derived from the
row's position in the prompt list, never from the batch it lands in: a run resumed from a journal
of finished batches (``stage1.io.journal``) draws the same text as an uninterrupted one.
Both backends expose the batch plan (``plan``) and one batch at a time (``generate_batch``) so a
caller can journal and skip whole batches; ``generate`` is the two together.

Why not stop on token ids: ``"\\nEND"`` is two tokens (198, 4689) and ``WEEKEND`` ends in 4689 too,
so a single-id stop ends generation inside words; a stop at every colon ends it at any colon. Why
``"\\nEND\\n"`` and not ``"\\nEND"``: ``"\\nENDIF"`` and ``"\\nENDPOINT"`` start with ``"\\nEND"``, and a
row cut there, padded with eos in its batch, read as an answer that ended by eos.
"""

from __future__ import annotations

from collections.abc import Sequence

from stage1.core import progress
from stage1.core.errors import ConfigError
from stage1.core.format import STOP_STRINGS
from stage1.core.generation import (
    Generation,
    GenerationSettings,
    check_prompt_ids,
    checked_seeds,
    longest_prompt_tokens,
    plan_batches,
    read_generation,
)
from stage1.core.masking import encode_text
from stage1.hf.vllm_backend import VLLMBackend, VLLMSettings, vllm_engine_args, vllm_max_model_len

# The pure parts are defined in stage1.core.generation and the vLLM backend in stage1.hf.vllm_backend;
# the names stage1.eval imports from here stay importable (the last six).
__all__ = [
    "SeededSampler",
    "TransformersBackend",
    "GenerationSettings",
    "VLLMBackend",
    "VLLMSettings",
    "longest_prompt_tokens",
    "vllm_engine_args",
    "vllm_max_model_len",
]


class SeededSampler:
    """A logits processor that samples the next token of each row with that row's ``torch.Generator``.

    It applies temperature and top-p, draws one token per row, and returns scores that are
    ``-inf`` everywhere except the draw, so greedy decoding in ``generate`` takes exactly it. A
    row's draws depend only on its own seed and logits, not on the other rows of the batch.
    """

    def __init__(self, temperature: float, top_p: float, seeds: Sequence[int]):
        self.temperature = temperature
        self.top_p = top_p
        self.seeds = [int(seed) for seed in seeds]
        self._generators: list | None = None

    def __call__(self, input_ids, scores):
        import torch

        if self._generators is None:
            if len(self.seeds) != scores.shape[0]:
                raise ValueError(f"{len(self.seeds)} seeds for a batch of {scores.shape[0]} rows")
            self._generators = [torch.Generator(device=scores.device).manual_seed(seed) for seed in self.seeds]
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, sorted_index = torch.sort(logits, descending=True, dim=-1)
            sorted_probs = torch.softmax(sorted_logits, dim=-1)
            # Drop a token once the mass before it already reaches top_p; the first always stays.
            drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= self.top_p
            drop = drop_sorted.scatter(1, sorted_index, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        choice = torch.cat(
            [torch.multinomial(probs[row : row + 1], num_samples=1, generator=generator) for row, generator in enumerate(self._generators)]
        )
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter(1, choice, 0.0)


class TransformersBackend:
    """Batched generation with ``model.generate``; see the module docstring."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self._stop_criteria = None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise ConfigError("the tokenizer has neither a pad nor an eos token", field="tokenizer")
        self.end_ids = {int(i) for i in (tokenizer.eos_token_id, self.pad_id) if i is not None}
        self.forbidden_ids = {int(i) for i in tokenizer.all_special_ids}

    def _stopping_criteria(self):
        from transformers import StoppingCriteriaList, StopStringCriteria

        if self._stop_criteria is None:
            self._stop_criteria = StoppingCriteriaList(
                [StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(STOP_STRINGS))]
            )
        return self._stop_criteria

    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """Prompt ids through ``encode_text``, refusing any special-token id."""
        encoded = [encode_text(self.tokenizer, prompt) for prompt in prompts]
        for prompt, ids in zip(prompts, encoded):
            check_prompt_ids(ids, self.forbidden_ids, prompt)
        return encoded

    def plan(self, prompts: Sequence[str], settings: GenerationSettings) -> list[list[int]]:
        """The batches ``generate`` decodes, as prompt indices: similar lengths together, fixed order."""
        return plan_batches("transformers", self.tokenizer, prompts, settings.batch_size)

    def generate_batch(self, prompts: Sequence[str], settings: GenerationSettings, seeds: Sequence[int]) -> list[Generation]:
        """Decode ``prompts`` together as one batch (in this order); one ``Generation`` each."""
        encoded = self.encode_prompts(prompts)
        rows = self._generate_batch(encoded, settings, list(seeds))
        return [read_generation(prompt, new_ids, self._decode, self.end_ids) for prompt, new_ids in zip(prompts, rows)]

    def generate(self, prompts: list[str], settings: GenerationSettings, *, seeds: Sequence[int] | None = None) -> list[Generation]:
        """One ``Generation`` per prompt, in the order given.

        Args:
            seeds: one sampling seed per prompt (see ``row_seed``); by default derived from
                ``settings.seed`` and the prompt's position.

        Raises:
            ValueError: ``seeds`` does not have one seed per prompt.
        """
        row_seeds = checked_seeds(seeds, settings, len(prompts))
        results: list[Generation | None] = [None] * len(prompts)
        for batch in self.plan(prompts, settings):
            generations = self.generate_batch([prompts[i] for i in batch], settings, [row_seeds[i] for i in batch])
            for index, generation in zip(batch, generations):
                results[index] = generation
            progress.report("generating", len(batch), len(prompts))
        return [result for result in results if result is not None]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _generate_batch(self, batch_ids: list[list[int]], settings: GenerationSettings, seeds: list[int]) -> list[list[int]]:
        import torch
        from transformers import LogitsProcessorList

        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in batch_ids])
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch_ids])
        device = getattr(self.model, "device", torch.device("cpu"))
        processors = LogitsProcessorList()
        if settings.do_sample:
            processors.append(SeededSampler(settings.temperature, settings.top_p, seeds))
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=settings.max_new_tokens,
                do_sample=False,  # the choice is made by SeededSampler when sampling
                repetition_penalty=1.0,  # a base model's generation_config must not change the decoding
                logits_processor=processors,
                stopping_criteria=self._stopping_criteria(),
                pad_token_id=self.pad_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        return output[:, width:].tolist()
