"""vLLM behind the generation interface (optional extra ``stage1[vllm]``, needs CUDA): the engine's
sizing settings, the arithmetic that sizes it for a stage's prompts (pure), and ``VLLMBackend``.

The same prompts as token ids, the same stop strings and the same reading back as the transformers
backend (``stage1.core.generation``). ``vllm`` itself is imported only when an engine starts: it is
a heavy optional dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stage1.core.errors import ConfigError
from stage1.core.format import STOP_STRINGS
from stage1.core.generation import (
    Generation,
    GenerationSettings,
    check_prompt_ids,
    checked_seeds,
    plan_batches,
    read_generation,
    refuse_invalid,
)
from stage1.core.masking import encode_text

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
        refuse_invalid(self, checks, "vllm", _VLLM_HINTS)


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
        return self.generate_batch(prompts, settings, checked_seeds(seeds, settings, len(prompts)))

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
