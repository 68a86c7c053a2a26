"""A stage's generation from end to end: the backend it decodes with (made only when a batch is left to
generate, the model freed after) and the journalled decode that SFT-data generation and the samples
stage share.

Above both backends, the memory plan and the journal: ``stage1.io.journal`` stores finished batches
and knows no backend, so the decode that opens a journal and makes a backend lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stage1.core.generation import Generation, GenerationSettings, longest_prompt_tokens, plan_batches
from stage1.hf import models  # looked up when called, so a test can stand a scripted model in for models.load_model
from stage1.hf.generation import TransformersBackend
from stage1.hf.memplan import check_engine_fits
from stage1.hf.vllm_backend import VLLMBackend, VLLMSettings, vllm_engine_args, vllm_max_model_len
from stage1.io.journal import GenerationJournal, Key, generate_with_journal, journal_fingerprint, model_identity
from stage1.io.layout import JOURNAL_NAME


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
            length = vllm_max_model_len(longest_prompt_tokens(tokenizer, prompts), max_new_tokens, vllm.max_model_len)
            check_engine_fits(model_dir, quantization, dtype, vllm, length, None, stage)
            engine = vllm_engine_args(quantization, dtype, seed, None, field="run.generation_backend", vllm=vllm, max_model_len=length)
            return VLLMBackend(str(model_dir), tokenizer, **engine)
        model = models.load_model(model_dir, quantization=quantization, dtype=dtype, device_map=device_map)
        model.eval()
        loaded.append(model)
        return TransformersBackend(model, tokenizer)

    try:
        yield make_backend
    finally:
        if loaded:
            models.free_model(loaded.pop())


def generate_journaled(
    out: Path,
    model_dir: str | Path,
    tokenizer,
    *,
    keys: Sequence[Key],
    prompts: Sequence[str],
    seeds: Sequence[int],
    decoding: GenerationSettings,
    backend: str,
    quantization: str,
    dtype: str,
    device_map: str | None,
    seed: int,
    vllm: Any,
    stage: str,
) -> tuple[list[Generation], Path, dict[str, int]]:
    """One generating stage's whole decode: batches planned, the journal at ``out`` opened under a
    fingerprint of everything that decides the rows (prompts, seeds, decoding, backend, model,
    quantisation, dtype, placement), the backend made only if a batch is missing, and the journal
    closed. SFT-data generation and the samples stage both decode through this.

    Returns:
        The generations in prompt order, the journal's path and the counts of ``generate_with_journal``.
    """
    plan = plan_batches(backend, tokenizer, prompts, decoding.batch_size)
    context = {"backend": backend, "model": model_identity(model_dir), "quantization": quantization,
               "dtype": dtype, "device_map": device_map}
    journal = GenerationJournal.open(out / JOURNAL_NAME, journal_fingerprint(keys, prompts, seeds, decoding, context))
    backends = model_backends(model_dir, tokenizer, backend=backend, quantization=quantization, dtype=dtype,
                              device_map=device_map, seed=seed, vllm=vllm, prompts=prompts,
                              max_new_tokens=decoding.max_new_tokens, stage=stage)
    try:
        with backends as make_backend:
            generations, counts = generate_with_journal(journal, plan, keys, prompts, seeds, decoding, make_backend)
    finally:
        journal.close()
    return generations, journal.path, counts
