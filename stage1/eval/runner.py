"""One variant at a time: load it on a fresh base, generate for every item, write, free.

Each variant runs in its own subprocess by default (``python -m stage1.eval.runner JOB.json``):
4-bit models often keep GPU memory after ``del``, and PEFT wraps a base model in place, so a fresh
process is the only reliable way to get a fresh base and all memory back. The parent then checks
that memory returned to its level (the GPU's used memory when CUDA is present, otherwise that the
child and anything it started are gone) before it loads the next variant. ``in_process`` runs the
same job function in this process (tests, CPU speed); every variant still loads a fresh model.

A job writes one file, ``generations/<variant>.json``, atomically: the job's fingerprint, the
responses and the memory measured. An interrupted evaluation resumes at the first variant whose
file is missing or has another fingerprint. A child started by the parent dies with it (Linux:
``PR_SET_PDEATHSIG``; elsewhere a watchdog thread), so a killed evaluation leaves no orphan still
holding a model and writing files.

With ``backend: vllm`` a variant is a vLLM engine on the model folder, its adapter (if any) served
as a LoRA request after the same lineage check, nf4 as bitsandbytes in-flight quantisation.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stage1.core.env_numbers import parse_ascii_int
from stage1.core.errors import LineageError, Stage1Error
from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.core.format import render_prompt
from stage1.eval.settings import VariantSpec
from stage1.io.atomic import atomic_write_json
from stage1.io.plain import read_json

CHILD_STDERR_TAIL = 4000
PARENT_PID_ENV = "STAGE1_EVAL_PARENT_PID"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def prompt_for(spec: VariantSpec, item: EvalItem) -> str:
    """The training format's prompt, or the raw instruction for ``base_raw`` (use_format=False)."""
    return render_prompt(item.instruction) if spec.use_format else item.instruction


def memory_snapshot() -> dict[str, float]:
    """This process's memory now: RSS, peak RSS and, when CUDA is in use, allocated/peak GPU memory (MiB)."""
    import psutil

    snapshot = {
        "rss_mib": psutil.Process().memory_info().rss / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # ru_maxrss is KiB on Linux
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        snapshot["cuda_allocated_mib"] = torch.cuda.memory_allocated() / 2**20
        snapshot["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return {key: round(value, 1) for key, value in snapshot.items()}


def _device_map(device: str) -> Any:
    import torch

    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return {"": 0} if use_cuda else None


def load_variant(spec: VariantSpec, *, dtype: str, device: str, parent_hash: str | None):
    """A fresh model (plus adapter) and its tokenizer.

    Raises:
        InputError / ConfigError: see ``stage1.hf.models.load_model``.
        LineageError: the adapter was not made from this model's weights.
    """
    from stage1.hf.models import load_adapter, load_model, load_tokenizer

    model = load_model(spec.model_dir, quantization=spec.quantization, dtype=dtype, device_map=_device_map(device))
    tokenizer = load_tokenizer(spec.model_dir)
    if spec.adapter_dir is not None:
        model = load_adapter(model, spec.adapter_dir, expected_parent=parent_hash or spec.model_dir)
    model.eval()
    return model, tokenizer


def generate_responses(spec: VariantSpec, items: list[EvalItem], model, tokenizer, settings: dict[str, Any]) -> list[EvalResponse]:
    """Greedy generations for every item through ``stage1.hf.generation``'s batched backend."""
    from stage1.hf.generation import TransformersBackend

    return responses_from_backend(spec, items, TransformersBackend(model, tokenizer), settings)


def responses_from_backend(spec: VariantSpec, items: list[EvalItem], backend, settings: dict[str, Any]) -> list[EvalResponse]:
    """Greedy generations for every item with any backend of ``stage1.hf.generation``."""
    from stage1.hf.generation import GenerationSettings

    prompts = [prompt_for(spec, item) for item in items]
    decoding = GenerationSettings(
        max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"], do_sample=False, seed=settings["seed"]
    )
    generations = backend.generate(prompts, decoding)
    return [
        EvalResponse(
            item_id=item.id,
            variant=spec.name,
            prompt=g.prompt,
            completion_text=g.completion_text,
            response=g.response,
            stop_reason=g.stop_reason,
            runaway=g.runaway,
            num_tokens=g.num_tokens,
        )
        for item, g in zip(items, generations)
    ]


def load_vllm_variant(spec: VariantSpec, *, dtype: str, seed: int, parent_hash: str | None,
                      prompts: list[str] | None = None, max_new_tokens: int = 256, vllm: dict[str, Any] | None = None):
    """A vLLM backend for one variant, after the lineage check ``load_adapter`` makes.

    The engine is sized by ``vllm`` (``VLLMSettings`` as a dict) for the longest of ``prompts``
    plus ``max_new_tokens``, and the memory arithmetic is checked before it starts.

    Raises:
        LineageError: the adapter has no lineage, or was made from other weights.
        ConfigError: see ``vllm_engine_args``; the KV cache would not hold one full-length sequence.
    """
    from stage1.hf.generation import (
        VLLMBackend,
        VLLMSettings,
        longest_prompt_tokens,
        vllm_engine_args,
        vllm_max_model_len,
    )
    from stage1.hf.memplan import check_engine_fits
    from stage1.hf.models import load_tokenizer
    from stage1.io.lineage import check_parent, read_lineage

    tokenizer = load_tokenizer(spec.model_dir)
    lora_rank = None
    if spec.adapter_dir is not None:
        lineage = read_lineage(spec.adapter_dir)
        if parent_hash is not None and lineage.parent_hash != parent_hash:
            raise LineageError(f"{spec.adapter_dir} was made from {lineage.parent_path}, not from {spec.model_dir}")
        if parent_hash is None:
            check_parent(lineage, spec.model_dir)
        lora_rank = int(read_json(spec.adapter_dir / "adapter_config.json")["r"])
    sizing = VLLMSettings(**(vllm or {}))
    length = vllm_max_model_len(longest_prompt_tokens(tokenizer, prompts or []), max_new_tokens, sizing.max_model_len)
    check_engine_fits(spec.model_dir, spec.quantization, dtype, sizing, length, lora_rank, "eval")
    engine = vllm_engine_args(spec.quantization, dtype, seed, lora_rank, vllm=sizing, max_model_len=length)
    return VLLMBackend(str(spec.model_dir), tokenizer, lora_dir=None if spec.adapter_dir is None else str(spec.adapter_dir), **engine)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load one variant, generate (unless a dry run), free it, and write ``job["out_path"]``.

    Returns the written record: fingerprint, variant, responses (empty for a dry run), memory, seconds.
    """
    spec = VariantSpec.from_dict(job["spec"])
    settings = job["settings"]
    started = time.perf_counter()
    if settings.get("backend", "transformers") == "vllm":
        responses, memory = _run_vllm(spec, job, settings)
    else:
        responses, memory = _run_transformers(spec, job, settings)
    record = {
        "fingerprint": job["fingerprint"],
        "variant": spec.name,
        "dry_run": bool(job.get("dry_run")),
        "responses": [response.to_dict() for response in responses],
        "memory": memory,
        "seconds": round(time.perf_counter() - started, 3),
        "pid": os.getpid(),
    }
    atomic_write_json(job["out_path"], record)
    return record


def _run_transformers(spec: VariantSpec, job: dict[str, Any], settings: dict[str, Any]) -> tuple[list[EvalResponse], dict[str, Any]]:
    from stage1.hf.models import free_model

    model, tokenizer = load_variant(spec, dtype=settings["dtype"], device=settings["device"], parent_hash=job.get("parent_hash"))
    memory = {"after_load": memory_snapshot()}
    responses: list[EvalResponse] = []
    if not job.get("dry_run"):
        items = [EvalItem.from_dict(row) for row in job["items"]]
        responses = generate_responses(spec, items, model, tokenizer, settings)
        memory["after_generate"] = memory_snapshot()
    free_model(model)
    del model
    memory["after_free"] = memory_snapshot()
    return responses, memory


def _run_vllm(spec: VariantSpec, job: dict[str, Any], settings: dict[str, Any]) -> tuple[list[EvalResponse], dict[str, Any]]:
    """The vLLM engine lives until this process exits; the parent's MemoryGuard checks it is gone."""
    items = [EvalItem.from_dict(row) for row in job["items"]]
    backend = load_vllm_variant(spec, dtype=settings["dtype"], seed=settings["seed"], parent_hash=job.get("parent_hash"),
                                prompts=[prompt_for(spec, item) for item in items], max_new_tokens=settings["max_new_tokens"],
                                vllm=settings.get("vllm"))
    memory = {"after_load": memory_snapshot()}
    responses: list[EvalResponse] = []
    if not job.get("dry_run"):
        responses = responses_from_backend(spec, items, backend, settings)
        memory["after_generate"] = memory_snapshot()
    del backend
    memory["after_free"] = memory_snapshot()
    return responses, memory


# ---------------------------------------------------------------- the parent's side


class MemoryGuard:
    """Checks that a finished variant gave its memory back before the next one loads."""

    def __init__(self, tolerance_mib: float, wait_s: float):
        self.tolerance_mib = tolerance_mib
        self.wait_s = wait_s
        self.cuda = self._cuda_available()
        self.baseline_mib = self.used_gpu_mib() if self.cuda else None

    @staticmethod
    def _cuda_available() -> bool:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return False
        return torch.cuda.is_available()

    @staticmethod
    def used_gpu_mib() -> float:
        import torch

        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20

    def wait_for_release(self, variant: str, child_started: float) -> dict[str, Any]:
        """Poll until memory is back; return what was measured.

        Raises:
            Stage1Error: memory did not return within ``wait_s`` (the next variant could not fit).
        """
        import psutil

        deadline = time.monotonic() + self.wait_s
        while True:
            leftovers = [p for p in psutil.Process().children(recursive=True) if _started_after(p, child_started)]
            used = self.used_gpu_mib() if self.cuda else None
            gpu_back = used is None or used <= self.baseline_mib + self.tolerance_mib
            if not leftovers and gpu_back:
                return {"gpu_used_mib": used, "gpu_baseline_mib": self.baseline_mib, "child_processes_left": 0}
            if time.monotonic() >= deadline:
                raise Stage1Error(
                    f"variant {variant}: memory did not return after it finished "
                    f"({len(leftovers)} child processes left, GPU used {used} MiB vs baseline {self.baseline_mib} MiB); "
                    "refusing to load the next variant"
                )
            time.sleep(0.2)


def _started_after(process, moment: float) -> bool:
    try:
        return process.create_time() >= moment - 1.0 and process.status() != "zombie"
    except Exception:  # the process ended while we looked
        return False


def run_job_in_subprocess(job: dict[str, Any], job_path: Path, guard: MemoryGuard) -> dict[str, Any]:
    """Run ``run_job`` in a fresh interpreter, wait for it, then check memory came back.

    Raises:
        Stage1Error: the child failed (its error and stderr tail are in the message) or kept memory.
    """
    atomic_write_json(job_path, job)
    started = time.time()
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env[PARENT_PID_ENV] = str(os.getpid())
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "stage1.eval.runner", str(job_path)], capture_output=True, text=True, env=env, check=False
        )
    finally:
        job_path.unlink(missing_ok=True)  # the child has read it; a kill of this process leaves one at most
    if completed.returncode != 0:
        raise Stage1Error(
            f"variant {job['spec']['name']}: the evaluation subprocess exited with status {completed.returncode}:\n"
            + completed.stderr[-CHILD_STDERR_TAIL:]
        )
    record = read_json(job["out_path"])
    record["memory"]["released"] = guard.wait_for_release(job["spec"]["name"], started)
    return record


def exit_with_parent(parent_pid: int | None) -> None:
    """Make this child die when the process that started it dies (a SIGKILL included).

    Linux: the kernel sends SIGKILL on the parent's death (``PR_SET_PDEATHSIG``). Elsewhere a
    daemon thread polls the parent id. Either way, a parent already gone ends the child at once.
    """
    if parent_pid is None:
        return
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(3)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(3)


def main(argv: list[str] | None = None) -> int:
    """Child entry: run the job in the JSON file given as the only argument; errors go to stderr."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m stage1.eval.runner JOB.json\n")
        return 2
    parent = os.environ.get(PARENT_PID_ENV)
    exit_with_parent(parse_ascii_int(parent) if parent else None)  # ASCII only: int("²") raises
    job = read_json(args[0])
    try:
        run_job(job)
    except Stage1Error as error:
        sys.stderr.write(f"{type(error).__name__}: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
