"""Generation behind one small interface: prompts in, parsed ``Generation`` records out.

Two backends share everything but the decoding call: prompt ids (``masking.encode_text``, so
special-token text typed in data never becomes a control token), the stop strings
(``format.STOP_STRINGS``, matched as strings), and reading the result back
(``read_generation``: token ids from the generated ids, text decoded from them, then
``format.parse_completion``).

- ``TransformersBackend`` (default): batched ``model.generate`` with left padding, greedy or
  seeded sampling. Stops use transformers' ``StopStringCriteria``, built once per backend (its
  constructor scans the whole vocabulary, about 0.3 s for Qwen2's 151k tokens). Sampling draws
  from a ``torch.Generator`` inside a logits processor and hands generate a one-hot choice, so
  nothing touches the global torch RNG.
- ``VLLMBackend`` (optional extra ``stage1[vllm]``): the same prompts as token ids, the same stop
  strings, the same reading back.

Why not stop on token ids: ``"\\nEND"`` is two tokens (198, 4689) and ``WEEKEND`` ends in 4689 too,
so a single-id stop ends generation inside words; a stop at every colon ends it at any colon.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stage1.errors import ConfigError
from stage1.format import STOP_EOS, STOP_STRINGS, parse_completion, render_example, render_prompt
from stage1.masking import encode_text


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings shared by both backends."""

    max_new_tokens: int = 48  # generated tokens at most, per prompt
    batch_size: int = 16  # prompts decoded together (left-padded)
    do_sample: bool = False  # False: greedy; True: seeded sampling with temperature and top_p
    temperature: float = 0.7  # sampling temperature (do_sample only)
    top_p: float = 0.9  # nucleus sampling mass (do_sample only)
    seed: int = 0  # seeds the sampling generator of each batch

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "batch_size": self.batch_size >= 1,
            "temperature": self.temperature > 0.0,
            "top_p": 0.0 < self.top_p <= 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"invalid value {getattr(self, name)!r}", field=f"generation.{name}", hint=_HINTS[name])


_HINTS = {
    "max_new_tokens": "at least 1",
    "batch_size": "at least 1",
    "temperature": "greater than 0 (use do_sample: false for greedy)",
    "top_p": "in (0, 1]",
}


@dataclass(frozen=True)
class Generation:
    """One prompt's generation, read back.

    ``completion_text`` is the raw decoded text after the prompt (special tokens removed), before
    any cleaning; ``runaway`` is measured on it. ``num_tokens`` counts the generated tokens up to
    the stop (the eos included when the model ended with eos).
    """

    prompt: str
    completion_text: str
    response: str
    stop_reason: str
    stopped: bool
    runaway: bool
    num_tokens: int


# ---------------------------------------------------------------- prompts (pure)


def build_fewshot_prompt(exemplars: Sequence[tuple[str, str]], instruction: str) -> str:
    """Exemplars rendered in the plain format, blank-line separated, then the open prompt.

    No chat template: the base model sees exactly the format it will be trained on.

    Raises:
        FormatError: an exemplar or the instruction is refused by the format.
    """
    shots = [render_example(shot_instruction, shot_response) for shot_instruction, shot_response in exemplars]
    return "\n\n".join([*shots, render_prompt(instruction)])


def read_generation(
    prompt: str, new_ids: Sequence[int], decode, end_ids: set[int], *, finished_by_eos: bool | None = None
) -> Generation:
    """Turn the ids generated after ``prompt`` into a ``Generation``.

    The ids are cut at the first id in ``end_ids`` (eos, or the padding a finished row gets); the
    text is decoded from the kept ids, never sliced out of a decoded prompt+completion string
    (the tokenizer normalises to NFC, which changes character counts).

    Args:
        decode: ``ids -> str`` with special tokens removed.
        finished_by_eos: whether the row ended with eos; by default, whether an end id was found.
    """
    ids = list(new_ids)
    cut = next((i for i, token in enumerate(ids) if token in end_ids), len(ids))
    if finished_by_eos is None:
        finished_by_eos = cut < len(ids)
    text = decode(ids[:cut])
    parsed = parse_completion(text, finished_by_eos=finished_by_eos)
    num_tokens = cut + (1 if parsed.stop_reason == STOP_EOS and cut < len(ids) else 0)
    return Generation(
        prompt=prompt,
        completion_text=text,
        response=parsed.response,
        stop_reason=parsed.stop_reason,
        stopped=parsed.stopped,
        runaway=parsed.runaway,
        num_tokens=num_tokens,
    )


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), in a deterministic order."""
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def check_prompt_ids(ids: Sequence[int], forbidden: set[int], prompt: str) -> None:
    """Refuse prompt ids holding a special token (``<|im_start|>``, eos): the format has none.

    ``encode_text`` keeps special-token text as text, so this cannot happen unless a tokenizer
    misbehaves; checked anyway because a chat-template id reaching a base model changes its task.
    """
    bad = sorted(set(ids) & forbidden)
    if bad:
        raise RuntimeError(f"special token ids {bad} in the prompt ids of {prompt[:80]!r}; prompts must be plain text")


# ---------------------------------------------------------------- transformers backend


class SeededSampler:
    """A logits processor that samples the next token with its own ``torch.Generator``.

    It applies temperature and top-p, draws one token per row, and returns scores that are
    ``-inf`` everywhere except the draw, so greedy decoding in ``generate`` takes exactly it.
    """

    def __init__(self, temperature: float, top_p: float, seed: int):
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self._generator = None

    def __call__(self, input_ids, scores):
        import torch

        if self._generator is None:
            self._generator = torch.Generator(device=scores.device).manual_seed(self.seed)
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, sorted_index = torch.sort(logits, descending=True, dim=-1)
            cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
            # Drop a token once the mass before it already reaches top_p; the first always stays.
            drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= self.top_p
            drop = drop_sorted.scatter(1, sorted_index, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        choice = torch.multinomial(probs, num_samples=1, generator=self._generator)
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

    def generate(self, prompts: list[str], settings: GenerationSettings) -> list[Generation]:
        """One ``Generation`` per prompt, in the order given."""
        encoded = self.encode_prompts(prompts)
        results: list[Generation | None] = [None] * len(prompts)
        for batch_number, batch in enumerate(batches_by_length([len(ids) for ids in encoded], settings.batch_size)):
            rows = self._generate_batch([encoded[i] for i in batch], settings, seed=settings.seed + batch_number)
            for index, new_ids in zip(batch, rows):
                results[index] = read_generation(prompts[index], new_ids, self._decode, self.end_ids)
        return [result for result in results if result is not None]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _generate_batch(self, batch_ids: list[list[int]], settings: GenerationSettings, seed: int) -> list[list[int]]:
        import torch
        from transformers import LogitsProcessorList

        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in batch_ids])
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch_ids])
        device = getattr(self.model, "device", torch.device("cpu"))
        processors = LogitsProcessorList()
        if settings.do_sample:
            processors.append(SeededSampler(settings.temperature, settings.top_p, seed))
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


# ---------------------------------------------------------------- vLLM backend (optional)


class VLLMBackend:
    """The same interface on vLLM (install ``stage1[vllm]``, needs CUDA)."""

    def __init__(self, model_path: str, tokenizer, **engine_args: Any):
        from vllm import LLM

        self.tokenizer = tokenizer
        self.llm = LLM(model=str(model_path), tokenizer=str(model_path), trust_remote_code=False, **engine_args)
        self.end_ids = {int(i) for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
        self.forbidden_ids = {int(i) for i in tokenizer.all_special_ids}

    def generate(self, prompts: list[str], settings: GenerationSettings) -> list[Generation]:
        """One ``Generation`` per prompt, in the order given."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = [encode_text(self.tokenizer, prompt) for prompt in prompts]
        for prompt, ids in zip(prompts, encoded):
            check_prompt_ids(ids, self.forbidden_ids, prompt)
        params = SamplingParams(
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p if settings.do_sample else 1.0,
            seed=settings.seed,
            stop=list(STOP_STRINGS),
            include_stop_str_in_output=True,
            skip_special_tokens=True,
        )
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params, use_tqdm=False)
        results = []
        for prompt, output in zip(prompts, outputs):
            completion = output.outputs[0]
            by_eos = completion.finish_reason == "stop" and completion.stop_reason is None
            results.append(
                read_generation(prompt, completion.token_ids, self._decode, self.end_ids, finished_by_eos=by_eos)
            )
        return results

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
