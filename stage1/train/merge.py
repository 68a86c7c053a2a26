"""Merge the SFT adapter into the base, so DPO can start a new adapter on base+SFT.

Why merge before DPO: with the SFT adapter still attached, TRL's "adapters disabled" reference is
the raw base, and DPO's loss collapses at step one. A merged model is one set of weights, and its
"adapters disabled" view is exactly the SFT model.

The merge always happens in 16-bit (or fp32 for the tiny CPU default) weights, never into 4-bit or
8-bit ones: merging into quantised weights re-quantises them and loses the update. For an adapter
trained against nf4 (QLoRA), the weights it saw were the dequantised nf4 ones, so merging onto
those (``merge_mode: dequantized_nf4``) reproduces the trained model more closely than merging
onto the original 16-bit weights; the manifest records the logit difference either way. At 32B
the merge runs in CPU memory (``merge_device: cpu``, low_cpu_mem_usage) so it never needs the GPU.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.errors import ConfigError, TrainingError
from stage1.core.format import render_completion, render_prompt
from stage1.core.masking import encode_text
from stage1.hf.models import eos_info, free_model, load_model, load_tokenizer
from stage1.io.atomic import give_new_file_mode
from stage1.io.lineage import (
    LINEAGE_NAME,
    Lineage,
    adapter_hash,
    check_parent,
    read_lineage,
    weights_hash,
    write_lineage,
)
from stage1.io.manifest import MANIFEST, build_manifest, library_versions, write_manifest
from stage1.train.settings import TrainingSettings

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


def load_live_model(model_dir: Path, adapter_dir: Path, lineage: Lineage):
    """The model as it was trained: the base held as in training, with the adapter attached unmerged."""
    from peft import PeftModel

    base = load_model(model_dir, quantization=lineage.quantization, dtype=lineage.dtype)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def load_merge_base(model_dir: Path, settings: TrainingSettings):
    """The base in 16-bit (or fp32): the original weights, or the dequantised nf4 ones.

    Raises:
        TrainingError: a quantised layer survived (merging into it would re-quantise the update).
    """
    from stage1.hf.models import torch_dtype

    device_map = settings.merge_device
    if settings.merge_mode == "16bit":
        model = load_model(model_dir, dtype=settings.merge_dtype, device_map=device_map)
    else:
        model = load_model(model_dir, quantization="nf4", dtype=settings.merge_dtype, device_map=device_map)
        model = model.dequantize(dtype=torch_dtype(settings.merge_dtype))
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
    """Remove what an earlier merge left, manifest first, so a crash never leaves a stale 'done'."""
    (out / MANIFEST).unlink(missing_ok=True)
    for pattern in ("*.safetensors", "*.safetensors.index.json", LINEAGE_NAME):
        for path in out.glob(pattern):
            path.unlink()


def run_merge(settings: TrainingSettings, *, model_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Merge the adapter in ``adapter_dir`` into the base in ``model_dir``; write the merged model to ``out_dir``.

    Writes safetensors weights, config, generation config, the tokenizer, ``lineage.json``
    (parent = base hash + adapter hash) and ``manifest.json`` last.

    Raises:
        LineageError: the adapter was not trained on ``model_dir``.
        ConfigError: ``merge_mode: dequantized_nf4`` for an adapter not trained against nf4.
    """
    model_dir, adapter_dir, out = Path(model_dir), Path(adapter_dir), Path(out_dir)
    lineage = read_lineage(adapter_dir)
    assert lineage is not None
    check_parent(lineage, model_dir)
    if settings.merge_mode == "dequantized_nf4" and lineage.quantization != "nf4":
        raise ConfigError(
            f"the adapter was trained against quantization={lineage.quantization}, not nf4",
            field="training.merge_mode",
            hint="use merge_mode: 16bit",
        )
    started = time.perf_counter()
    tokenizer = load_tokenizer(model_dir)
    eos, logit_diff = merge_and_save(settings, model_dir, adapter_dir, out, tokenizer, lineage)
    facts = {
        "merge_mode": settings.merge_mode,
        "merge_dtype": settings.merge_dtype,
        "merge_device": settings.merge_device,
        "adapter_quantization": lineage.quantization,
        "max_logit_diff_vs_live": logit_diff,
        "probes": len(PROBES),
        "seconds": round(time.perf_counter() - started, 3),
    }
    config = {"training": settings_to_dict(settings)}
    merged_lineage = merged_model_lineage(lineage, settings, model_dir=model_dir, adapter_dir=adapter_dir, out=out, eos=eos, facts=facts)
    write_lineage(out, merged_lineage)
    log.info("merged %s into %s (%s); max logit difference vs live: %s", adapter_dir, model_dir, settings.merge_mode, logit_diff)
    manifest = build_manifest(
        STAGE,
        config=config,
        seed=None,
        inputs={"model": model_dir, "adapter": adapter_dir},
        # lineage.json carries the merged weights' hash; hashing the weights a second time would cost minutes at 32B.
        outputs={"lineage": out / LINEAGE_NAME},
        counts={"probes": len(PROBES)},
        extra={**facts, "parent_hash": lineage.parent_hash, "adapter_hash": merged_lineage.adapter_hash,
               "weights_hash": merged_lineage.weights_hash, "eos": eos.to_dict()},
    )
    write_manifest(out, manifest)
    return manifest


def merged_model_lineage(lineage: Lineage, settings: TrainingSettings, *, model_dir: Path, adapter_dir: Path, out: Path, eos, facts: dict) -> Lineage:
    """The merged model's lineage: the base's hash, the adapter's hash, and its own weights' hash."""
    return Lineage(
        kind="merged",
        parent_path=str(model_dir),
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
        config={"training": settings_to_dict(settings)},
        versions=library_versions(),
        extra={"adapter_path": str(adapter_dir), "adapter_kind": lineage.kind, **facts},
    )


def merge_and_save(settings: TrainingSettings, model_dir: Path, adapter_dir: Path, out: Path, tokenizer, lineage: Lineage):
    """Measure the live model on the probes, merge, measure again, save. Returns (eos, max logit difference or None).

    One model is in memory at a time: the live model is freed before the merge base loads.
    """
    probes = probe_ids(tokenizer)
    live_logits = None
    if settings.merge_check_logits:
        live = load_live_model(model_dir, adapter_dir, lineage)
        live_logits = probe_logits(live, probes)
        free_model(live)
        del live
    merged = merge_adapter(model_dir, adapter_dir, settings)
    eos = eos_info(merged, tokenizer)
    logit_diff = max_logit_difference(live_logits, probe_logits(merged, probes)) if live_logits is not None else None
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)
    merged.save_pretrained(str(out), safe_serialization=True, max_shard_size="5GB")
    tokenizer.save_pretrained(str(out))
    give_new_file_mode(out)
    free_model(merged)
    return eos, logit_diff
