"""Reference log-probabilities computed once and kept, keyed by what determines them.

With ``training.precompute_reference: true`` TRL's ``precompute_ref_log_probs`` scores every pair
under the reference model once, before training, instead of once per step; the trainer then skips
the reference forward. TRL keeps the result only in a temporary ``datasets`` cache (our rows are an
in-memory dataset), so a β or ``loss_type`` sweep on the same pairs would score them again. Here the
two columns (``ref_chosen_logps``, ``ref_rejected_logps``) are written to
``<dpo out>/reference_logps/<key>-<split>.json`` and reused whenever the key matches.

The key hashes everything the reference log-probabilities depend on: the reference weights (the
model folder's weights hash), the SFT adapter's hash when the reference is base + SFT adapter, the
pairs file, ``dpo.max_length``, the training quantisation and dtype, and the library versions that
compute them. β, ``loss_type``, the learning rate and the DPO adapter do not enter it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CACHE_DIR = "reference_logps"
COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


def reference_key(parts: dict[str, Any]) -> str:
    """A 16-hex-digit key of the JSON form of ``parts`` (pure; keys sorted)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def reference_parts(*, model_hash: str, adapter_hash: str | None, pairs_hash: str, max_length: int | None,
                    quantization: str, dtype: str, versions: dict[str, str]) -> dict[str, Any]:
    """What determines the reference log-probabilities of one pairs file (see the module docstring)."""
    return {"model": model_hash, "adapter": adapter_hash, "pairs": pairs_hash, "max_length": max_length,
            "quantization": quantization, "dtype": dtype, "versions": versions}


def cache_path(folder: Path, key: str, split: str) -> Path:
    return Path(folder) / CACHE_DIR / f"{key}-{split}.json"


def read_cached(path: Path, rows: int) -> dict[str, list[float]] | None:
    """The cached columns, or None when missing, unreadable or for another number of rows."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("rows") != rows or any(len(record.get(column, [])) != rows for column in COLUMNS):
        return None
    return {column: [float(value) for value in record[column]] for column in COLUMNS}


def write_cached(path: Path, parts: dict[str, Any], columns: dict[str, list[float]]) -> Path:
    from stage1.io.atomic import atomic_write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    rows = len(columns[COLUMNS[0]])
    return atomic_write_json(path, {"key_parts": parts, "rows": rows, **{c: [float(v) for v in columns[c]] for c in COLUMNS}})
