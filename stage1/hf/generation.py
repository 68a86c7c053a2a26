"""Generation behind one small interface: prompts in, parsed ``Generation`` records out.

Two backends share everything but the decoding call: prompt ids (``masking.encode_text``, so
special-token text typed in data never becomes a control token), the stop strings
(``format.STOP_STRINGS``, matched as strings), and reading the result back
(``read_generation``: token ids from the generated ids, text decoded from them, then
``format.parse_completion``).

- ``TransformersBackend`` (default): batched ``model.generate`` with left padding, greedy or
  seeded sampling. A row stops at eos or a stop string (``END`` as a whole line, or a new
  ``Instruction:``). Stops use transformers' ``StopStringCriteria``, built once per backend (its
  constructor scans the whole vocabulary, about 0.3 s for Qwen2's 151k tokens). Sampling draws
  from one ``torch.Generator`` per row inside a logits processor and hands generate a one-hot
  choice, so nothing touches the global torch RNG.
- ``VLLMBackend`` (optional extra ``stage1[vllm]``): the same prompts as token ids, the same stop
  strings, the same reading back.

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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.core import progress
from stage1.core.errors import ConfigError
from stage1.core.format import (
    STOP_END,
    STOP_EOS,
    STOP_STRINGS,
    is_end_line,
    parse_completion,
    render_example,
    render_prompt,
)
from stage1.core.masking import encode_text
from stage1.core.seeds import row_seed


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings shared by both backends."""

    max_new_tokens: int = 48  # generated tokens at most, per prompt
    batch_size: int = 16  # prompts decoded together (left-padded)
    do_sample: bool = False  # False: greedy; True: seeded sampling with temperature and top_p
    temperature: float = 0.7  # sampling temperature (do_sample only)
    top_p: float = 0.9  # nucleus sampling mass (do_sample only)
    seed: int = 0  # sampling: each row draws from its own generator, seeded by (seed, row key)

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "batch_size": self.batch_size >= 1,
            "temperature": self.temperature > 0.0,
            "top_p": 0.0 < self.top_p <= 1.0,
        }
        _refuse_invalid(self, checks, "generation", _HINTS)


def _refuse_invalid(settings: Any, checks: dict[str, bool], section: str, hints: dict[str, str]) -> None:
    """Raise ``ConfigError`` for the first setting whose check failed, naming ``section.name``."""
    for name, ok in checks.items():
        if not ok:
            raise ConfigError(f"invalid value {getattr(settings, name)!r}", field=f"{section}.{name}", hint=hints[name])


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

    Padding is not told from eos by its id (Qwen pads with eos), nor by position (``generate``
    does not say at which step a stop string fired). It need not be: every ``STOP_STRINGS`` entry
    makes ``parse_completion`` end on an ``END`` line or a runaway before ``finished_by_eos`` is
    looked at, so a row stopped by a stop string reads as ``end`` or ``runaway`` whatever follows
    it, and a row that reads as ``eos`` really wrote eos (``test_format`` checks this property).

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
    if parsed.stop_reason == STOP_END and not finished_by_eos and ends_with_open_end_line(text):
        # Cut by the token limit right after "END": nothing after it (a newline, eos) shows that END
        # was a whole line rather than the start of "ENDING", so the row did not stop.
        parsed = parse_completion(text[: text.rstrip().rfind("\n") + 1], finished_by_eos=False)
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


def ends_with_open_end_line(text: str) -> bool:
    """Whether the text's first whole ``END`` line is its last line, with nothing after it.

    Generation stops on ``"\\nEND\\n"`` or eos, so such a text was cut by the token limit.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    first_end = next((i for i, line in enumerate(lines) if is_end_line(line)), None)
    return first_end == len(lines) - 1


def default_row_seeds(seed: int, count: int) -> list[int]:
    """Seeds for ``count`` rows identified by their position in the prompt list."""
    return [row_seed(seed, "row", index) for index in range(count)]


def _checked_seeds(seeds: Sequence[int] | None, settings: GenerationSettings, count: int) -> list[int]:
    if seeds is None:
        return default_row_seeds(settings.seed, count)
    if len(seeds) != count:
        raise ValueError(f"{len(seeds)} seeds for {count} prompts")
    return [int(seed) for seed in seeds]


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), in a deterministic order."""
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def chunk_batches(count: int, batch_size: int) -> list[list[int]]:
    """Indices in input order, ``batch_size`` at a time (vLLM schedules within a chunk itself)."""
    return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]


def plan_batches(backend: str, tokenizer, prompts: Sequence[str], batch_size: int) -> list[list[int]]:
    """The batches a backend decodes ``prompts`` in: by similar length for transformers, in input
    order for vLLM. Needs only the tokenizer, so a caller can plan before any model loads."""
    if backend == "vllm":
        return chunk_batches(len(prompts), batch_size)
    return batches_by_length([len(encode_text(tokenizer, prompt)) for prompt in prompts], batch_size)


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
        row_seeds = _checked_seeds(seeds, settings, len(prompts))
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


# ---------------------------------------------------------------- vLLM backend (optional)

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 512)  # ranks a vLLM engine can be sized for
VLLM_MODEL_LEN_MULTIPLE = 256  # max_model_len is rounded up to this (vLLM's paged KV blocks are 16 tokens)


@dataclass(frozen=True)
class VLLMSettings:
    """How a vLLM engine is sized (the ``vllm:`` subsection of ``sft_data`` and ``eval``).

    Without ``max_model_len`` vLLM sizes its KV cache for the model's whole context (131,072 tokens
    for Qwen2.5-32B, ~32 GiB for one sequence) and refuses to start beside 61 GiB of bf16 weights.
    """

    max_model_len: int | None = None  # tokens per sequence; None: the stage's longest prompt + max_new_tokens, rounded up to 256
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory vLLM reserves up front (weights, activations, KV cache)
    max_num_seqs: int = 64  # sequences decoded at once at most
    tensor_parallel_size: int = 1  # GPUs the weights and KV cache are split over
    enable_prefix_caching: bool = True  # reuse the KV blocks of a shared prompt prefix (SFT data's few-shot exemplars)

    def __post_init__(self) -> None:
        checks = {
            "max_model_len": self.max_model_len is None or self.max_model_len >= 1,
            "gpu_memory_utilization": 0.0 < self.gpu_memory_utilization <= 1.0,
            "max_num_seqs": self.max_num_seqs >= 1,
            "tensor_parallel_size": self.tensor_parallel_size >= 1,
        }
        _refuse_invalid(self, checks, "vllm", _VLLM_HINTS)


_VLLM_HINTS = {
    "max_model_len": "at least 1, or null for the stage's own budget",
    "gpu_memory_utilization": "in (0, 1]",
    "max_num_seqs": "at least 1",
    "tensor_parallel_size": "at least 1 (the number of GPUs)",
}


def vllm_max_model_len(longest_prompt_tokens: int, max_new_tokens: int, setting: int | None = None) -> int:
    """The sequence length a vLLM engine is sized for (pure).

    The stage's own budget, the longest prompt plus ``max_new_tokens`` rounded up to
    ``VLLM_MODEL_LEN_MULTIPLE``, unless ``setting`` (``vllm.max_model_len``) names one; never the
    model's whole context.

    Raises:
        ConfigError: ``setting`` is shorter than the budget (a prompt would be refused mid-run).
    """
    budget = longest_prompt_tokens + max_new_tokens
    if setting is not None:
        if setting < budget:
            raise ConfigError(
                f"max_model_len {setting} is below the longest prompt ({longest_prompt_tokens} tokens) + max_new_tokens ({max_new_tokens})",
                field="vllm.max_model_len", hint=f"set it to at least {budget}, or null to size it from the prompts")
        return setting
    return -(-budget // VLLM_MODEL_LEN_MULTIPLE) * VLLM_MODEL_LEN_MULTIPLE


def vllm_engine_args(
    quantization: str,
    dtype: str,
    seed: int,
    lora_rank: int | None,
    field: str = "eval.backend",
    *,
    vllm: VLLMSettings | None = None,
    max_model_len: int | None = None,
) -> dict[str, Any]:
    """vLLM engine arguments that hold the weights as the transformers path would (pure).

    Args:
        lora_rank: the adapter's rank when requests run through one (sizes the engine's LoRA slots).
        field: the setting named in an error (which stage chose vLLM).
        vllm: the stage's engine sizing; by default ``VLLMSettings()``.
        max_model_len: the sequence length from ``vllm_max_model_len``; None leaves vLLM's own
            (the model's whole context: only for a small model).

    Raises:
        ConfigError: int8 (vLLM quantises in flight to 4-bit only), or a LoRA rank above 512.
    """
    if quantization == "int8":
        raise ConfigError("vLLM cannot quantise to int8 in flight", field=field, hint=f"set {field}: transformers for int8")
    sizing = vllm or VLLMSettings()
    args: dict[str, Any] = {
        "dtype": dtype,
        "seed": seed,
        "gpu_memory_utilization": sizing.gpu_memory_utilization,
        "max_num_seqs": sizing.max_num_seqs,
        "tensor_parallel_size": sizing.tensor_parallel_size,
        "enable_prefix_caching": sizing.enable_prefix_caching,
    }
    if max_model_len is not None:
        args["max_model_len"] = max_model_len
    if quantization == "nf4":
        args["quantization"] = "bitsandbytes"
    if lora_rank is not None:
        fitting = [rank for rank in VLLM_LORA_RANKS if rank >= lora_rank]
        if not fitting:
            raise ConfigError(f"LoRA rank {lora_rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})", field="lora.r")
        args.update(enable_lora=True, max_lora_rank=fitting[0], max_loras=1)
    return args


def longest_prompt_tokens(tokenizer, prompts: Sequence[str]) -> int:
    """The longest prompt in tokens, counted as the backends encode it (``encode_text``)."""
    return max((len(encode_text(tokenizer, prompt)) for prompt in prompts), default=0)


class VLLMBackend:
    """The same interface on vLLM (install ``stage1[vllm]``, needs CUDA)."""

    def __init__(self, model_path: str, tokenizer, *, lora_dir: str | None = None, **engine_args: Any):
        """Start a vLLM engine on ``model_path``; with ``lora_dir``, every request runs through that
        adapter (the engine then needs ``enable_lora=True`` and a ``max_lora_rank`` in ``engine_args``)."""
        from vllm import LLM

        self.tokenizer = tokenizer
        self.llm = LLM(model=str(model_path), tokenizer=str(model_path), trust_remote_code=False, **engine_args)
        self.lora_request = None
        if lora_dir is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, str(lora_dir))
        self.end_ids = {int(i) for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
        self.forbidden_ids = {int(i) for i in tokenizer.all_special_ids}

    def plan(self, prompts: Sequence[str], settings: GenerationSettings) -> list[list[int]]:
        """Consecutive chunks of ``batch_size`` prompts (vLLM schedules within a chunk itself)."""
        return plan_batches("vllm", self.tokenizer, prompts, settings.batch_size)

    def generate(self, prompts: list[str], settings: GenerationSettings, *, seeds: Sequence[int] | None = None) -> list[Generation]:
        """One ``Generation`` per prompt, in the order given (all prompts handed to vLLM at once).

        Raises:
            ValueError: ``seeds`` does not have one seed per prompt.
        """
        return self.generate_batch(prompts, settings, _checked_seeds(seeds, settings, len(prompts)))

    def generate_batch(self, prompts: Sequence[str], settings: GenerationSettings, seeds: Sequence[int]) -> list[Generation]:
        """One ``Generation`` per prompt; each request carries its own seed."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = [encode_text(self.tokenizer, prompt) for prompt in prompts]
        for prompt, ids in zip(prompts, encoded):
            check_prompt_ids(ids, self.forbidden_ids, prompt)
        params = [
            SamplingParams(
                max_tokens=settings.max_new_tokens,
                temperature=settings.temperature if settings.do_sample else 0.0,
                top_p=settings.top_p if settings.do_sample else 1.0,
                seed=int(seed),
                stop=list(STOP_STRINGS),
                include_stop_str_in_output=True,
                skip_special_tokens=True,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in encoded], params, use_tqdm=False, lora_request=self.lora_request
        )
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


@contextmanager
def model_backends(
    model_dir: str | Path,
    tokenizer,
    *,
    backend: str,
    quantization: str,
    dtype: str,
    device_map: str | None,
    seed: int,
    vllm: VLLMSettings,
    prompts: Sequence[str],
    max_new_tokens: int,
    stage: str,
) -> Iterator[Callable[[], Any]]:
    """A factory of one stage's generation backend (called only when a batch is left to generate),
    and the model freed when the stage is done.

    The vLLM engine is sized for this stage's own budget (its longest prompt + ``max_new_tokens``,
    ``vllm``) and checked to fit before it starts; the transformers backend loads the model as every
    stage loads it. SFT-data generation and the samples stage share this, so both get the same sizing.
    """
    loaded: list[Any] = []

    def make_backend() -> Any:
        if backend == "vllm":
            from stage1.hf.memplan import check_engine_fits

            length = vllm_max_model_len(longest_prompt_tokens(tokenizer, prompts), max_new_tokens, vllm.max_model_len)
            check_engine_fits(model_dir, quantization, dtype, vllm, length, None, stage)
            engine = vllm_engine_args(quantization, dtype, seed, None, field="run.generation_backend", vllm=vllm, max_model_len=length)
            return VLLMBackend(str(model_dir), tokenizer, **engine)
        from stage1.hf.models import load_model

        model = load_model(model_dir, quantization=quantization, dtype=dtype, device_map=device_map)
        model.eval()
        loaded.append(model)
        return TransformersBackend(model, tokenizer)

    try:
        yield make_backend
    finally:
        if loaded:
            from stage1.hf.models import free_model

            free_model(loaded.pop())
