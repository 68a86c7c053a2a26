"""One variant at a time: load it on a fresh base, generate for every item, write, free.

Each variant runs in its own subprocess by default (``python -m stage1.eval_runner JOB.json``):
4-bit models often keep GPU memory after ``del``, and PEFT wraps a base model in place, so a fresh
process is the only reliable way to get a fresh base and all memory back. The parent then checks
that memory returned to its level (the GPU's used memory when CUDA is present, otherwise that the
child and anything it started are gone) before it loads the next variant. ``in_process`` runs the
same job function in this process (tests, CPU speed); every variant still loads a fresh model.

A job writes one file, ``generations/<variant>.json``, atomically: the job's fingerprint, the
responses and the memory measured. An interrupted evaluation resumes at the first variant whose
file is missing or has another fingerprint.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stage1.errors import Stage1Error
from stage1.eval_items import EvalItem, EvalResponse
from stage1.eval_settings import VariantSpec
from stage1.format import render_prompt
from stage1.storage import atomic_write_json

CHILD_STDERR_TAIL = 4000


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
        InputError / ConfigError: see ``stage1.models.load_model``.
        LineageError: the adapter was not made from this model's weights.
    """
    from stage1.models import load_adapter, load_model, load_tokenizer

    model = load_model(spec.model_dir, quantization=spec.quantization, dtype=dtype, device_map=_device_map(device))
    tokenizer = load_tokenizer(spec.model_dir)
    if spec.adapter_dir is not None:
        model = load_adapter(model, spec.adapter_dir, expected_parent=parent_hash or spec.model_dir)
    model.eval()
    return model, tokenizer


def generate_responses(spec: VariantSpec, items: list[EvalItem], model, tokenizer, settings: dict[str, Any]) -> list[EvalResponse]:
    """Greedy generations for every item through ``stage1.generation``'s batched backend."""
    from stage1.generation import GenerationSettings, TransformersBackend

    prompts = [prompt_for(spec, item) for item in items]
    decoding = GenerationSettings(
        max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"], do_sample=False, seed=settings["seed"]
    )
    generations = TransformersBackend(model, tokenizer).generate(prompts, decoding)
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


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load one variant, generate (unless a dry run), free it, and write ``job["out_path"]``.

    Returns the written record: fingerprint, variant, responses (empty for a dry run), memory, seconds.
    """
    from stage1.models import free_model

    spec = VariantSpec.from_dict(job["spec"])
    settings = job["settings"]
    started = time.perf_counter()
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
    completed = subprocess.run(
        [sys.executable, "-m", "stage1.eval_runner", str(job_path)], capture_output=True, text=True, env=env, check=False
    )
    if completed.returncode != 0:
        raise Stage1Error(
            f"variant {job['spec']['name']}: the evaluation subprocess exited with status {completed.returncode}:\n"
            + completed.stderr[-CHILD_STDERR_TAIL:]
        )
    record = json.loads(Path(job["out_path"]).read_text(encoding="utf-8"))
    record["memory"]["released"] = guard.wait_for_release(job["spec"]["name"], started)
    job_path.unlink(missing_ok=True)
    return record


def main(argv: list[str] | None = None) -> int:
    """Child entry: run the job in the JSON file given as the only argument; errors go to stderr."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m stage1.eval_runner JOB.json\n")
        return 2
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    try:
        run_job(job)
    except Stage1Error as error:
        sys.stderr.write(f"{type(error).__name__}: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
