"""Reference log-probabilities computed once and kept, keyed by what determines them.

With ``training.precompute_reference: true`` TRL's ``precompute_ref_log_probs`` scores every pair
under the reference model once, before training, instead of once per step; the trainer then skips
the reference forward. TRL keeps the result only in a temporary ``datasets`` cache (our rows are an
in-memory dataset), so a β or ``loss_type`` sweep on the same pairs would score them again. Here the
two columns (``ref_chosen_logps``, ``ref_rejected_logps``) are written to
``<dpo out>/reference_logps/<key>-<split>.json`` and reused only when the key matches and the file's
recorded key parts equal the ones asked for (a stale file at the right name is refused).

The key hashes everything the reference log-probabilities depend on:

- the reference weights (the model folder's weights hash) and, when the reference is base + SFT
  adapter, that adapter's weights *and* its ``adapter_config.json`` (rank, alpha, target modules:
  the same weights under another scaling are another model);
- the tokenizer files of the model folder (the pairs are tokenized here, with that tokenizer);
- the pairs file, the training quantisation and dtype, and the library versions that compute them;
- every DPO setting that TRL reads on the way to the reference log-probabilities
  (``REFERENCE_SETTINGS``, read from the installed TRL 1.x ``trl/trainer/dpo_trainer.py``):
  the collator's ``max_length``, ``truncation_mode`` and ``pad_to_multiple_of``
  (``DataCollatorForPreference``), ``pad_token`` and ``padding_free`` (the trainer's ``__init__``),
  ``ld_alpha`` (``compute_ref_log_probs`` weights the tokens past the shorter completion by it),
  ``disable_dropout`` (whether the reference forward is deterministic), the batch sizes the
  precompute pass pads to (``precompute_ref_batch_size``, else the per-device batch sizes), and the
  autocast precision (``bf16``, ``fp16``). ``tests/unit/train/test_reference_cache.py`` reads TRL's
  source and fails when it reads a setting that is in neither this list nor ``NOT_IN_REFERENCE``.

β, ``loss_type``, the learning rate and the DPO adapter do not enter it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from stage1.io.plain import read_json

CACHE_DIR = "reference_logps"
COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")

REFERENCE_SETTINGS = (
    "max_length", "truncation_mode", "pad_to_multiple_of", "pad_token", "padding_free", "ld_alpha", "disable_dropout",
    "precompute_ref_batch_size", "per_device_train_batch_size", "per_device_eval_batch_size", "bf16", "fp16",
)
# Settings TRL reads in the same code paths that cannot change the reference's values, with why.
NOT_IN_REFERENCE = {
    "precompute_ref_log_probs": "whether to precompute at all: the cache exists only when it is on",
    "dataloader_num_workers": "how batches are loaded, not what they hold",
    "dataloader_pin_memory": "host memory pinning",
    "gradient_checkpointing_kwargs": "checkpointing is disabled during the reference forward",
    "model_init_kwargs": "used only when TRL loads the model from a name; the model is passed in",
    "trust_remote_code": "off, and used only when TRL loads the model itself",
    "sync_ref_model": "TRL refuses it together with precompute_ref_log_probs",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja")


def reference_settings(config: Any) -> dict[str, Any]:
    """The ``REFERENCE_SETTINGS`` of a ``DPOConfig`` (or any object with those attributes), as JSON values."""
    return {name: getattr(config, name, None) for name in REFERENCE_SETTINGS}


def reference_key(parts: dict[str, Any]) -> str:
    """A 16-hex-digit key of the JSON form of ``parts`` (pure; keys sorted)."""
    return hashlib.sha256(_canonical(parts).encode("utf-8")).hexdigest()[:16]


def reference_parts(*, model_hash: str, adapter_hash: str | None, adapter_config_hash: str | None, tokenizer_hashes: dict[str, str],
                    pairs_hash: str, settings: dict[str, Any], quantization: str, dtype: str,
                    versions: dict[str, str]) -> dict[str, Any]:
    """What determines the reference log-probabilities of one pairs file (see the module docstring)."""
    return {"model": model_hash, "adapter": adapter_hash, "adapter_config": adapter_config_hash, "tokenizer": dict(tokenizer_hashes),
            "pairs": pairs_hash, "settings": dict(settings), "quantization": quantization, "dtype": dtype, "versions": versions}


def cache_path(folder: Path, key: str, split: str) -> Path:
    return Path(folder) / CACHE_DIR / f"{key}-{split}.json"


def read_cached(path: Path, rows: int, parts: dict[str, Any]) -> dict[str, list[float]] | None:
    """The cached columns, or None when missing, unreadable, for another number of rows, or written
    under other key parts than ``parts`` (a stale file is never reused, whatever its name)."""
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or _canonical(record.get("key_parts")) != _canonical(parts):
        return None
    if record.get("rows") != rows or any(len(record.get(column, [])) != rows for column in COLUMNS):
        return None
    return {column: [float(value) for value in record[column]] for column in COLUMNS}


def write_cached(path: Path, parts: dict[str, Any], columns: dict[str, list[float]]) -> Path:
    from stage1.io.atomic import atomic_write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    rows = len(columns[COLUMNS[0]])
    return atomic_write_json(path, {"key_parts": parts, "rows": rows, **{c: [float(v) for v in columns[c]] for c in COLUMNS}})


def _canonical(parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)
