"""Hand the SFT model on to DPO and evaluation: merged, or as the adapter it was trained as.

``training.sft_handoff: merge`` (unquantised runs): the SFT adapter is merged into the base, so DPO
can start a new adapter on base+SFT. With the SFT adapter still attached, TRL's "adapters disabled"
reference would be the raw base and DPO's loss would collapse at step one; a merged model is one set
of weights, and its "adapters disabled" view is exactly the SFT model. The merge happens in 16-bit
(or fp32) weights, never into 4-bit or 8-bit ones. At 32B it runs in CPU memory
(``merge_device: cpu``, low_cpu_mem_usage) so it never needs the GPU.

``training.sft_handoff: adapter`` (QLoRA): nothing is merged. DPO and evaluation load the base as SFT
held it and the SFT adapter on top (``stage1.train_dpo``), so they get the trained model exactly; a
merged model reloaded in nf4 is a fresh quantisation that loses most of a small LoRA delta
(docs/notes/training.md has the measurements).

Either way this stage loads what DPO and evaluation will load, as they load it, compares it with
the trained model on the SFT training rows (``stage1.train.handoff``), records the share of the SFT gain
kept in its manifest and fails closed below ``training.min_sft_gain_kept``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.core.errors import TrainingError
from stage1.core.format import render_completion, render_prompt
from stage1.core.masking import encode_text
from stage1.core.records import SFTExample
from stage1.hf.models import eos_info, free_model, load_adapter, load_model, load_tokenizer
from stage1.hf.tokenizer_cache import copy_tokenizer_files
from stage1.io.atomic import atomic_write_json
from stage1.io.folders import MODEL_FOLDER_FILES, atomic_folder
from stage1.io.lineage import (
    LINEAGE_NAME,
    Lineage,
    adapter_hash,
    check_parent,
    portable_path,
    read_lineage,
    weights_hash,
    write_lineage,
)
from stage1.io.manifest import MANIFEST, build_manifest, library_versions, write_manifest
from stage1.io.records import read_records
from stage1.train.data import build_sft_rows
from stage1.train.handoff import FIDELITY_NAME, LoadFidelity, check_fidelity, gain_kept, mean_token_loss
from stage1.train.settings import TrainingSettings
from stage1.train.trainer_config import resolve_device

log = logging.getLogger(__name__)

STAGE = "merge"

#: Fixed probes: the merge reads only the model and the adapter, so its check cannot use data files.
PROBES = (
    ("What is the capital of France?", "Paris is the capital."),
    ("List three colours.", "Red\nGreen\nBlue"),
    ("Explain 'Response: X' in one line.", "It is a label."),
    ("Write a line of Python.", "```python\nprint('hi')\n```"),
)


def probe_ids(tokenizer) -> list[list[int]]:
    """Token ids of each probe as a full training row reads (prompt + completion)."""
    return [encode_text(tokenizer, render_prompt(i) + render_completion(r)) for i, r in PROBES]


def probe_logits(model, probes: list[list[int]]) -> list[Any]:
    """fp32 CPU logits ``[seq, vocab]`` for each probe, one probe per forward (no padding)."""
    import torch

    device = next(model.parameters()).device
    outputs = []
    with torch.no_grad():
        for ids in probes:
            tensor = torch.tensor([ids], device=device)
            outputs.append(model(input_ids=tensor).logits[0].float().cpu())
    return outputs


def max_logit_difference(first: list[Any], second: list[Any]) -> float:
    """Largest absolute difference between two lists of logits of the same shapes."""
    return max(float((a - b).abs().max()) for a, b in zip(first, second))


def load_live_model(model_dir: Path, adapter_dir: Path, lineage: Lineage, device_map=None):
    """The model as it was trained: the base held as in training, with the adapter attached unmerged.

    ``device_map``: where a quantised base goes (the training GPU at 32B; default the CPU).
    """
    from peft import PeftModel

    base = load_model(model_dir, quantization=lineage.quantization, dtype=lineage.dtype, device_map=device_map)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def load_merge_base(model_dir: Path, settings: TrainingSettings):
    """The base in 16-bit (or fp32), the original weights.

    Raises:
        TrainingError: a quantised layer survived (merging into it would re-quantise the update).
    """
    model = load_model(model_dir, dtype=settings.merge_dtype, device_map=settings.merge_device)
    quantized = [name for name, module in model.named_modules() if "bitsandbytes" in type(module).__module__]
    if quantized:
        raise TrainingError(f"refusing to merge into quantised layers ({', '.join(quantized[:3])}, ...)")
    return model


def merge_adapter(model_dir: Path, adapter_dir: Path, settings: TrainingSettings):
    """Base (per ``merge_mode``) + adapter, merged and unwrapped into a plain model."""
    from peft import PeftModel

    base = load_merge_base(model_dir, settings)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def _clear_outputs(out: Path) -> None:
    """Remove what an earlier merge left, manifest first, so a crash never leaves a stale 'done' (and
    the old weights' space is free before the new ones are written beside them)."""
    (out / MANIFEST).unlink(missing_ok=True)
    for pattern in ("*.safetensors", "*.safetensors.index.json", LINEAGE_NAME):
        for path in out.glob(pattern):
            path.unlink()


def run_merge(settings: TrainingSettings, *, model_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path,
              sft_train_path: str | Path | None = None, eval_dtype: str | None = None) -> dict[str, Any]:
    """Merge the adapter in ``adapter_dir`` into the base in ``model_dir``; write the merged model to ``out_dir``.

    Writes safetensors weights, config, generation config, the tokenizer, ``lineage.json``
    (parent = base hash + adapter hash) and ``manifest.json`` last.

    With ``sft_train_path`` the merged model is loaded again as DPO (and evaluation, at
    ``eval_dtype``) load it and compared with the trained model (``stage1.train.handoff``); the manifest
    records it under ``fidelity``.

    Raises:
        LineageError: the adapter was not trained on ``model_dir``.
        GateError: the merged model, as the next stage loads it, keeps less than
            ``training.min_sft_gain_kept`` of the SFT gain (``fidelity.json`` says by how much).
    """
    model_dir, adapter_dir, out = Path(model_dir), Path(adapter_dir), Path(out_dir)
    lineage = read_lineage(adapter_dir)
    assert lineage is not None
    check_parent(lineage, model_dir)
    started = time.perf_counter()
    tokenizer = load_tokenizer(model_dir)
    rows = fidelity_rows(tokenizer, None if sft_train_path is None else Path(sft_train_path), settings.fidelity_rows)
    eos, logit_diff, fidelity = merge_and_save(settings, model_dir, adapter_dir, out, tokenizer, lineage, rows, eval_dtype)
    facts = {
        "sft_handoff": "merge",
        "merge_mode": settings.merge_mode,
        "merge_dtype": settings.merge_dtype,
        "merge_device": settings.merge_device,
        "adapter_quantization": lineage.quantization,
        "max_logit_diff_vs_live": logit_diff,  # the merged weights as held in the merge, not as reloaded
        "fidelity": fidelity,
        "probes": len(PROBES),
        "seconds": round(time.perf_counter() - started, 3),
    }
    config = {"training": settings.recorded()}
    merged_lineage = merged_model_lineage(lineage, settings, model_dir=model_dir, adapter_dir=adapter_dir, out=out, eos=eos, facts=facts)
    write_lineage(out, merged_lineage)
    log.info("merged %s into %s (%s); max logit difference vs live: %s", adapter_dir, model_dir, settings.merge_mode, logit_diff)
    manifest = build_manifest(
        STAGE,
        config=config,
        seed=None,
        inputs={"model": model_dir, "adapter": adapter_dir, **({"sft_train": Path(sft_train_path)} if sft_train_path else {})},
        # lineage.json carries the merged weights' hash; hashing the weights a second time would cost minutes at 32B.
        outputs={"lineage": out / LINEAGE_NAME},
        counts={"probes": len(PROBES), "fidelity_rows": len(rows)},
        extra={**facts, "parent_hash": lineage.parent_hash, "adapter_hash": merged_lineage.adapter_hash,
               "weights_hash": merged_lineage.weights_hash, "eos": eos.to_dict()},
    )
    write_manifest(out, manifest)
    return manifest


def merged_model_lineage(lineage: Lineage, settings: TrainingSettings, *, model_dir: Path, adapter_dir: Path, out: Path, eos, facts: dict) -> Lineage:
    """The merged model's lineage: the base's hash, the adapter's hash, and its own weights' hash."""
    return Lineage(
        kind="merged",
        parent_path=portable_path(model_dir, out),
        parent_hash=lineage.parent_hash,
        # Downstream stages hold this model the way the adapter was trained (see lineage.py).
        quantization=lineage.quantization,
        dtype=settings.merge_dtype,
        eos_token=eos.token,
        eos_token_id=eos.token_id,
        trained_modules=lineage.trained_modules,
        adapter_hash=adapter_hash(adapter_dir),
        weights_hash=weights_hash(out),
        data_hashes=lineage.data_hashes,
        config={"training": settings.recorded()},
        versions=library_versions(),
        # Content only: DPO and evaluation hash this file, so no wall-clock time and no run path.
        extra={"adapter_path": portable_path(adapter_dir, out), "adapter_kind": lineage.kind,
               **{key: value for key, value in facts.items() if key != "seconds"}},
    )


def fidelity_rows(tokenizer, sft_train_path: Path | None, count: int = 64) -> list[dict[str, list[int]]]:
    """The first ``count`` (``training.fidelity_rows``) SFT training rows as SFT trained on them (response tokens supervised)."""
    if sft_train_path is None:
        return []

    examples = read_records(sft_train_path, SFTExample)[:count]
    return build_sft_rows(tokenizer, examples, max_length=None, overlong="drop", source=sft_train_path).rows


@dataclass(frozen=True)
class TrainedReference:
    """What the handed-on models are compared with: the trained SFT model and the base under it."""

    probe_logits: list[Any] | None
    trained_loss: float | None
    base_loss: float | None


def measure_trained(model_dir: Path, adapter_dir: Path, lineage: Lineage, probes, rows, *, logits: bool,
                    device_map=None) -> TrainedReference:
    """Probe logits and mean loss of the trained model (base as trained + live adapter), and the
    base's loss (the same weights with the adapter disabled). One load."""
    if not logits and not rows:
        return TrainedReference(None, None, None)
    live = load_live_model(model_dir, adapter_dir, lineage, device_map)
    try:
        live.eval()
        live_logits = probe_logits(live, probes) if logits or rows else None
        trained = mean_token_loss(live, rows) if rows else None
        base = None
        if rows:
            with live.disable_adapter():
                base = mean_token_loss(live, rows)
    finally:
        free_model(live)
    return TrainedReference(live_logits, trained, base)


def training_device_map(settings: TrainingSettings):
    """Where training holds a quantised base (``training_run.load_model_for_training``, one process)."""
    if settings.quantization == "none":
        return None
    return {"": 0} if resolve_device(settings) == "cuda" else "cpu"


def handed_on_loads(settings: TrainingSettings, folder: Path, adapter_dir: Path | None, eval_dtype: str | None) -> list[tuple[str, dict]]:
    """How DPO and evaluation load the SFT model they get: (stage, load_model keywords).

    DPO: ``training_run.load_model_for_training`` (training quantisation and dtype). Evaluation:
    the same quantisation at ``eval.dtype``; one entry serves both when the two loads are the same.
    """
    dpo = {"quantization": settings.quantization, "dtype": settings.dtype, "device_map": training_device_map(settings)}
    loads = [("dpo", dpo)]
    if eval_dtype is not None and eval_dtype != settings.dtype:
        loads.append(("eval", {**dpo, "dtype": eval_dtype}))
    else:
        loads = [("dpo+eval", dpo)]
    return [(stage, {**kwargs, "path": folder, "adapter_dir": adapter_dir}) for stage, kwargs in loads]


def measure_handed_on(settings: TrainingSettings, reference: TrainedReference, probes, rows, loads) -> list[Any]:
    """Each handed-on model loaded as its stage loads it, scored against ``reference``."""
    measured = []
    for stage, how in loads:
        model = load_model(how["path"], quantization=how["quantization"], dtype=how["dtype"], device_map=how["device_map"])
        if how["adapter_dir"] is not None:
            model = load_adapter(model, how["adapter_dir"], expected_parent=how["path"])
        try:
            model.eval()
            loss = mean_token_loss(model, rows)
            diff = max_logit_difference(reference.probe_logits, probe_logits(model, probes))
        finally:
            free_model(model)
        # fidelity.json is read by DPO and evaluation: folder names, not the run's path.
        described = Path(how["path"]).name + (f" + {Path(how['adapter_dir']).parent.name}/{Path(how['adapter_dir']).name}"
                                               if how["adapter_dir"] else "") + f", quantization {how['quantization']}, dtype {how['dtype']}"
        measured.append(LoadFidelity(stage, described, round(loss, 6), gain_kept(reference.base_loss, reference.trained_loss, loss),
                                     round(diff, 6)))
    return measured


def fidelity_record(settings: TrainingSettings, reference: TrainedReference, measured, rows) -> dict[str, Any]:
    return {
        "rows": len(rows),
        "base_loss": reference.base_loss,
        "trained_loss": reference.trained_loss,
        "min_sft_gain_kept": settings.min_sft_gain_kept,
        "loads": [load.to_dict() for load in measured],
    }


def gate_fidelity(settings: TrainingSettings, out: Path, reference: TrainedReference, measured, rows, fix: str) -> dict[str, Any]:
    """Write ``fidelity.json`` in ``out`` and fail closed below ``training.min_sft_gain_kept``."""
    record = fidelity_record(settings, reference, measured, rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / FIDELITY_NAME, record)
    for load in measured:
        log.info("SFT model as %s loads it: loss %.4f (base %.4f, trained %.4f), gain kept %s, max logit diff %.4f", load.loaded_by,
                 load.mean_loss, reference.base_loss, reference.trained_loss, load.sft_gain_kept, load.max_logit_diff)
    check_fidelity(measured, settings.min_sft_gain_kept, base_loss=reference.base_loss, trained_loss=reference.trained_loss, fix=fix)
    return record


def merge_and_save(settings: TrainingSettings, model_dir: Path, adapter_dir: Path, out: Path, tokenizer, lineage: Lineage,
                   rows=(), eval_dtype: str | None = None):
    """Measure the live model on the probes, merge, measure again, save; then, with ``rows``, load the
    merged model as DPO and evaluation load it and gate on the SFT gain it keeps.

    Returns (eos, max logit difference of the merged weights as held in the merge, or None; the
    fidelity record, or None). One model is in memory at a time.

    Raises:
        GateError: the merged model, as the next stage loads it, keeps too little of the SFT gain.
    """
    probes = probe_ids(tokenizer)
    rows = list(rows)
    reference = measure_trained(model_dir, adapter_dir, lineage, probes, rows, logits=settings.merge_check_logits,
                                device_map=training_device_map(settings))
    merged = merge_adapter(model_dir, adapter_dir, settings)
    eos = eos_info(merged, tokenizer)
    logit_diff = max_logit_difference(reference.probe_logits, probe_logits(merged, probes)) if reference.probe_logits is not None else None
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)
    needed = sum(tensor.numel() * tensor.element_size() for tensor in merged.state_dict().values())
    # Written whole into a temporary sibling and swapped in: a full disk leaves the previous folder, never half a model.
    with atomic_folder(out, needed_bytes=needed, drop=MODEL_FOLDER_FILES) as staged:
        merged.save_pretrained(str(staged), safe_serialization=True, max_shard_size="5GB")
        if not copy_tokenizer_files(model_dir, staged):  # the base's bytes: one tokenizer build per process
            tokenizer.save_pretrained(str(staged))
    free_model(merged)
    fidelity = None
    if rows:
        measured = measure_handed_on(settings, reference, probes, rows, handed_on_loads(settings, out, None, eval_dtype))
        fix = ("set training.sft_handoff: adapter (DPO continues the SFT adapter on the base; no re-quantised merge)"
               if settings.quantization != "none" else "set training.merge_dtype: float32")
        fidelity = gate_fidelity(settings, out, reference, measured, rows, fix)
    return eos, logit_diff, fidelity


def run_handoff(settings: TrainingSettings, *, model_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path,
                sft_train_path: str | Path, eval_dtype: str | None = None) -> dict[str, Any]:
    """``sft_handoff: adapter``: check that base + SFT adapter, loaded as DPO and evaluation load it,
    is the trained model; write ``fidelity.json`` and ``manifest.json`` (no weights) to ``out_dir``.

    Raises:
        LineageError: the adapter was not trained on ``model_dir``.
        GateError: the loaded model keeps less than ``training.min_sft_gain_kept`` of the SFT gain.
    """
    model_dir, adapter_dir, out = Path(model_dir), Path(adapter_dir), Path(out_dir)
    lineage = read_lineage(adapter_dir)
    assert lineage is not None
    check_parent(lineage, model_dir)
    started = time.perf_counter()
    (out / MANIFEST).unlink(missing_ok=True)
    tokenizer = load_tokenizer(model_dir)
    rows, probes = fidelity_rows(tokenizer, Path(sft_train_path), settings.fidelity_rows), probe_ids(tokenizer)
    reference = measure_trained(model_dir, adapter_dir, lineage, probes, rows, logits=True, device_map=training_device_map(settings))
    measured = measure_handed_on(settings, reference, probes, rows, handed_on_loads(settings, model_dir, adapter_dir, eval_dtype))
    fix = "the adapter is loaded as it was trained, so a loss here means another load path: check training.quantization and eval.dtype"
    fidelity = gate_fidelity(settings, out, reference, measured, rows, fix)
    manifest = build_manifest(
        STAGE,
        config={"training": settings.recorded()},
        seed=None,
        inputs={"model": model_dir, "adapter": adapter_dir, "sft_train": Path(sft_train_path)},
        outputs={"fidelity": out / FIDELITY_NAME},
        counts={"probes": len(PROBES), "fidelity_rows": len(rows)},
        extra={"sft_handoff": "adapter", "adapter_quantization": lineage.quantization, "adapter_hash": adapter_hash(adapter_dir),
               "parent_hash": lineage.parent_hash, "fidelity": fidelity, "seconds": round(time.perf_counter() - started, 3)},
    )
    write_manifest(out, manifest)
    return manifest
