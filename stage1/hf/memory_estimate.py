"""Peak GPU memory per stage, estimated before anything loads.

Arithmetic on the architecture (config.json values) and the training knobs; nothing is allocated.
Each stage's peak is the sum of named parts, so a plan that does not fit says which part to shrink:

- weights at their precision: nf4 = 4 bits + block absmax (double-quantised: ~0.127 bits) per
  linear weight, int8 = 1 byte, 16-bit = 2 bytes; embeddings, lm_head, norms and biases stay 16-bit;
- LoRA: parameters, gradients and AdamW's two fp32 moments;
- activations: with gradient checkpointing each layer keeps its input (hidden x 2 bytes per token)
  and one layer is recomputed at a time; without it every layer keeps ~(8h + 2 kv + 4 i) values;
- logits over the vocabulary: TRL's fused LM head projects 4096-token x 32768-column tiles in fp32,
  so the full (tokens x 152k) logits never exist; generation keeps one fp32 row per sequence;
- the DPO reference pass: adapters disabled on the same weights, no extra copy, no stored
  activations (it runs under no_grad), but the batch holds chosen and rejected (2x sequences);
- generation with transformers: weights, the KV cache (batch x tokens) and one fp32 logits row per
  sequence;
- generation with vLLM: the engine reserves ``gpu_memory_utilization`` x GPU memory up front on each
  GPU; of that, weights / ``tensor_parallel_size``, the activations of its profile batch and its
  runtime (CUDA graphs, context) come first, and the rest is KV cache, which must hold at least one
  sequence of ``max_model_len`` tokens (Qwen2.5-32B: 64 layers x 8 KV heads x 128 x 2 x 2 bytes =
  256 KiB per token) or vLLM refuses to start;
- a fixed CUDA context and a fragmentation margin.

The merge runs in CPU memory (``training.merge_device: cpu``) and needs no GPU memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from stage1.core.errors import ConfigError
from stage1.hf.model_shape import ModelShape

GIB = 1024**3
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4-bit codes + 8-bit absmax per 64 + fp32 second-level scale per 256 blocks
WEIGHT_BYTES = {"none": 2.0, "nf4": NF4_BITS / 8, "int8": 1.0}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}
LM_HEAD_TILE_TOKENS = 4096  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE
LM_HEAD_TILE_VOCAB = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE
CUDA_CONTEXT_GIB = 1.0
FRAGMENTATION = 0.10  # allocator slack on top of the parts
# vLLM's profile run decodes one batch of max_num_batched_tokens; its default for the offline LLM
# class on a GPU of 70 GiB or more (vllm.engine.arg_utils) is 16384 tokens.
VLLM_PROFILE_TOKENS = 16384
VLLM_RUNTIME_GIB = 2.0  # CUDA context, NCCL buffers and captured CUDA graphs outside torch's allocator (estimate)


@dataclass(frozen=True)
class Workload:
    """What one stage runs: training knobs, or generation."""

    quantization: str = "nf4"
    dtype: str = "bfloat16"
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    batch_size: int = 4
    max_length: int = 2048
    gradient_checkpointing: bool = True


@dataclass(frozen=True)
class GenerationWorkload:
    """Batched generation with transformers: SFT data from the base, or evaluation of a variant."""

    stage: str = "generate"
    quantization: str = "nf4"
    dtype: str = "bfloat16"
    batch_size: int = 8
    total_tokens: int = 1024  # prompt + new tokens per sequence (vLLM: its max_model_len)
    backend: str = "transformers"  # "vllm": see plan_vllm
    gpu_memory_utilization: float = 0.9  # vLLM only, and the four below
    max_num_seqs: int = 64
    tensor_parallel_size: int = 1
    lora_rank: int | None = None  # the LoRA slot an adapter is served through
    section: str = "eval"  # the settings section named in advice (sft_data or eval)


@dataclass(frozen=True)
class StagePlan:
    """One stage's estimated peak, part by part (GiB)."""

    stage: str
    device: str
    parts: dict[str, float]
    total_gib: float
    advice: tuple[str, ...] = ()
    problem: str = ""  # why the stage cannot run whatever the GPU's size (e.g. vLLM's KV cache holds no full sequence)
    notes: tuple[str, ...] = ()  # figures shown beside the parts
    problem_setting: str = ""  # the setting ``problem`` names first


@dataclass(frozen=True)
class MemoryPlan:
    """Every stage's estimate and the GPU it is checked against."""

    gpu_gib: float
    parameters: int
    stages: tuple[StagePlan, ...]

    def problems(self) -> list[str]:
        """One line per GPU stage that does not fit, with what to change."""
        return [
            (s.problem or f"{s.stage} needs ~{s.total_gib:.1f} GiB of {self.gpu_gib:.0f}") + ": " + "; ".join(s.advice)
            for s in self.stages
            if not stage_fits(s, self.gpu_gib)
        ]

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.stages if s.stage == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_fits(stage: StagePlan, gpu_gib: float) -> bool:
    """A CPU stage always; a GPU stage when its total fits and nothing else stops it."""
    return stage.device != "gpu" or (stage.total_gib <= gpu_gib and not stage.problem)


def weight_gib(shape: ModelShape, quantization: str, dtype: str) -> float:
    """Resident weights: quantised projections plus 16-bit (or ``dtype``) everything else."""
    other_bytes = DTYPE_BYTES[dtype]
    linear_bytes = WEIGHT_BYTES[quantization] if quantization != "none" else DTYPE_BYTES[dtype]
    return (shape.linear_parameters() * linear_bytes + shape.other_parameters() * other_bytes) / GIB


def lora_gib(shape: ModelShape, work: Workload) -> float:
    """Adapter weights + gradients (compute dtype) + AdamW moments (two fp32 values)."""
    count = shape.lora_parameters(work.lora_r, work.lora_targets)
    return count * (2 * DTYPE_BYTES[work.dtype] + 8) / GIB


def activation_gib(shape: ModelShape, tokens: int, checkpointing: bool, dtype: str) -> float:
    width = DTYPE_BYTES[dtype]
    per_layer = shape.activation_values_per_token_layer() * tokens * width
    if checkpointing:
        kept = shape.num_hidden_layers * shape.hidden_size * tokens * width
        return (kept + per_layer) / GIB
    return shape.num_hidden_layers * per_layer / GIB


def lm_head_gib(shape: ModelShape, tokens: int) -> float:
    """Forward and backward tiles of the fused LM head, fp32."""
    tile = min(tokens, LM_HEAD_TILE_TOKENS) * min(shape.vocab_size, LM_HEAD_TILE_VOCAB) * 4
    return 2 * tile / GIB


def _total(parts: dict[str, float]) -> float:
    return sum(parts.values()) * (1 + FRAGMENTATION) + CUDA_CONTEXT_GIB


def _training_advice(work: Workload, stage: str) -> tuple[str, ...]:
    section = "dpo" if stage == "dpo" else "sft"
    advice = []
    if work.quantization == "none":
        advice.append("set training.quantization: nf4 (QLoRA)")
    if not work.gradient_checkpointing:
        advice.append(f"set {section}.gradient_checkpointing: true")
    advice.append(f"lower {section}.per_device_train_batch_size and raise {section}.gradient_accumulation_steps to keep the effective batch")
    advice.append(f"or lower {section}.max_length")
    return tuple(advice)


def plan_training(shape: ModelShape, work: Workload, stage: str) -> StagePlan:
    """SFT, or DPO (two sequences per pair; the reference pass adds no weights and keeps no activations)."""
    sequences = work.batch_size * (2 if stage == "dpo" else 1)
    tokens = sequences * work.max_length
    parts = {
        "weights": weight_gib(shape, work.quantization, work.dtype),
        "lora+grads+adamw": lora_gib(shape, work),
        "activations": activation_gib(shape, tokens, work.gradient_checkpointing, work.dtype),
        "lm_head tiles": lm_head_gib(shape, tokens),
    }
    if stage == "dpo":
        # The no_grad reference forward holds one layer's values for all tokens at a time.
        parts["reference pass"] = shape.activation_values_per_token_layer() * tokens * DTYPE_BYTES[work.dtype] / GIB
    return StagePlan(stage, "gpu", {k: round(v, 3) for k, v in parts.items()}, round(_total(parts), 2), _training_advice(work, stage))


def plan_generation(shape: ModelShape, work: GenerationWorkload, gpu_gib: float = 80.0) -> StagePlan:
    """Batched generation with transformers: weights, the KV cache, one fp32 logits row per sequence.

    vLLM instead reserves a fixed share of the GPU (``gpu_memory_utilization``) up front: ``plan_vllm``.
    """
    if work.backend == "vllm":
        return plan_vllm(shape, work, gpu_gib)
    parts = {"weights": weight_gib(shape, work.quantization, work.dtype)}
    parts["kv cache"] = kv_bytes_per_token(shape, work.dtype) * work.batch_size * work.total_tokens / GIB
    parts["logits"] = work.batch_size * shape.vocab_size * 4 / GIB
    advice = (f"lower the {work.stage} batch size", "or load the model in nf4")
    return StagePlan(work.stage, "gpu", {k: round(v, 3) for k, v in parts.items()}, round(_total(parts), 2), advice)


def kv_bytes_per_token(shape: ModelShape, dtype: str) -> int:
    """Keys and values of every layer for one token (Qwen2.5-32B in bf16: 262,144 bytes = 256 KiB)."""
    return shape.num_hidden_layers * 2 * shape.kv_dim * DTYPE_BYTES[dtype]


def plan_vllm(shape: ModelShape, work: GenerationWorkload, gpu_gib: float) -> StagePlan:
    """What a vLLM engine takes on each GPU, and whether its KV cache holds one full-length sequence.

    vLLM reserves ``gpu_memory_utilization`` x GPU memory at start-up. Weights (split over
    ``tensor_parallel_size`` GPUs), the activations of its profile run (``VLLM_PROFILE_TOKENS``
    tokens through one layer's widest tensors, plus one fp32 logits row per sequence), the LoRA slot
    and the runtime come out of it; the rest becomes KV cache. vLLM refuses to start when that rest
    cannot hold one sequence of ``max_model_len`` tokens; fewer than ``max_num_seqs`` full-length
    sequences only means fewer run at once.
    """
    tp = work.tensor_parallel_size
    width = DTYPE_BYTES[work.dtype]
    section = f"{work.section}.vllm"
    reserved = work.gpu_memory_utilization * gpu_gib
    parts = {
        "weights": weight_gib(shape, work.quantization, work.dtype) / tp,
        "activations": (VLLM_PROFILE_TOKENS * (4 * shape.hidden_size + 2 * shape.intermediate_size) * width / tp
                        + work.max_num_seqs * shape.vocab_size * 4) / GIB,
        "runtime": VLLM_RUNTIME_GIB,
    }
    if work.lora_rank is not None:
        per_rank = sum(a + b for a, b in shape.projection_shapes().values()) * shape.num_hidden_layers
        parts["lora slot"] = per_rank * work.lora_rank * width / tp / GIB
    kv_free = reserved - sum(parts.values())
    per_sequence = kv_bytes_per_token(shape, work.dtype) * work.total_tokens / tp / GIB
    parts["kv cache"] = max(kv_free, 0.0)
    full_sequences = int(kv_free // per_sequence) if per_sequence > 0 and kv_free > 0 else 0
    notes = (
        f"reserves {work.gpu_memory_utilization:g} x {gpu_gib:.0f} GiB = {reserved:.1f} GiB per GPU (tensor_parallel_size {tp})",
        f"max_model_len {work.total_tokens}: {per_sequence:.2f} GiB of KV per sequence; "
        f"{min(full_sequences, work.max_num_seqs)} of max_num_seqs {work.max_num_seqs} fit at full length",
    )
    problem, setting = "", ""
    if kv_free <= 0:
        setting = f"{section}.gpu_memory_utilization"
        problem = (
            f"{work.stage}: weights, activations and runtime take {reserved - kv_free:.1f} GiB of the {reserved:.1f} GiB vLLM "
            f"reserves ({setting} {work.gpu_memory_utilization:g} x {gpu_gib:.0f} GiB): nothing is left for the KV cache"
        )
    elif full_sequences < 1:
        setting = f"{section}.max_model_len"
        problem = (
            f"{work.stage}: vLLM's KV cache gets {kv_free:.2f} GiB of the {reserved:.1f} GiB it reserves, but one sequence of "
            f"{section}.max_model_len {work.total_tokens} needs {per_sequence:.2f} GiB, so the engine would refuse to start"
        )
    advice = (
        f"lower {section}.max_model_len (null sizes it from the prompts and max_new_tokens)",
        f"or raise {section}.gpu_memory_utilization (now {work.gpu_memory_utilization:g})",
        f"or raise {section}.tensor_parallel_size (now {tp}) to split weights and KV cache over more GPUs",
        "or set sft_data.quantization: nf4" if work.section == "sft_data" else "or train and evaluate in nf4 (training.quantization)",
    )
    return StagePlan(work.stage, "gpu", {k: round(v, 3) for k, v in parts.items()}, round(reserved, 2), advice, problem, notes, setting)


def check_vllm_fits(shape: ModelShape, work: GenerationWorkload, gpu_gib: float) -> StagePlan:
    """The plan ``plan_vllm`` makes, checked before an engine starts.

    Raises:
        ConfigError: the KV cache cannot hold one sequence of ``max_model_len`` (naming the setting).
    """
    plan = plan_vllm(shape, work, gpu_gib)
    if plan.problem:
        raise ConfigError(plan.problem, field=plan.problem_setting, hint="; ".join(plan.advice))
    return plan


def plan_merge(shape: ModelShape, merge_dtype: str, merge_device: str, handoff: str = "merge", quantization: str = "none") -> StagePlan:
    """The merge holds the base once at the merge dtype (plus the small adapter).

    With ``sft_handoff: adapter`` nothing is merged: the stage only loads the base as training holds
    it, with the SFT adapter, to check the hand-off (``stage1.train.handoff``), on the GPU for nf4.
    """
    if handoff == "adapter":
        parts = {"weights": weight_gib(shape, quantization, "bfloat16")}
        device = "gpu" if quantization != "none" else "cpu"
        return StagePlan("merge", device, {k: round(v, 3) for k, v in parts.items()}, round(_total(parts), 2), ("nothing is merged",),
                         notes=("sft_handoff: adapter: the hand-off check loads the base + SFT adapter, no merge",))
    parts = {"weights": shape.parameter_count() * DTYPE_BYTES[merge_dtype] / GIB}
    device = "gpu" if merge_device == "cuda" else "cpu"
    total = round(_total(parts), 2) if device == "gpu" else round(parts["weights"], 2)
    return StagePlan("merge", device, {k: round(v, 3) for k, v in parts.items()}, total, ("set training.merge_device: cpu",))


def plan_memory(
    shape: ModelShape,
    *,
    sft: Workload,
    dpo: Workload,
    merge_dtype: str = "bfloat16",
    merge_device: str = "cpu",
    generation: tuple[GenerationWorkload, ...] = (GenerationWorkload(),),
    gpu_gib: float = 80.0,
    handoff: str = "merge",
) -> MemoryPlan:
    """Estimate every stage's peak. Pure arithmetic."""
    stages = (
        *(plan_generation(shape, work, gpu_gib) for work in generation if work.stage != "eval"),
        plan_training(shape, sft, "sft"),
        plan_merge(shape, merge_dtype, merge_device, handoff, sft.quantization),
        plan_training(shape, dpo, "dpo"),
        *(plan_generation(shape, work, gpu_gib) for work in generation if work.stage == "eval"),
    )
    return MemoryPlan(gpu_gib, shape.parameter_count(), stages)


def check_fits(plan: MemoryPlan, gpu_gib: float | None = None) -> None:
    """Raises: ConfigError naming the first stage that does not fit and what to change."""
    limit = plan.gpu_gib if gpu_gib is None else gpu_gib
    for stage in plan.stages:
        if stage.problem:
            raise ConfigError(stage.problem, field=stage.problem_setting, hint="; ".join(stage.advice))
        if stage.device == "gpu" and stage.total_gib > limit:
            biggest = max(stage.parts, key=stage.parts.get)
            raise ConfigError(
                f"the {stage.stage} stage needs ~{stage.total_gib:.1f} GiB (largest part: {biggest} "
                f"{stage.parts[biggest]:.1f} GiB) but the GPU has {limit:.0f} GiB",
                field="training" if stage.stage != "dpo" else "dpo",
                hint="; ".join(stage.advice),
            )
