"""Where a checkpoint came from: the parent it was trained or merged from, and how it was held.

Every adapter and every merged model carries ``lineage.json``. An adapter is only meaningful on
the exact weights it was trained against: a DPO adapter trained on base+merged SFT applied to the
raw base is a different model, and one trained against nf4 weights behaves differently on 16-bit
ones. The parent is therefore identified by a hash of its weight files, not by its path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stage1.core.errors import LineageError
from stage1.io.atomic import atomic_write_json, atomic_write_text
from stage1.io.hashing import sha256_file

LINEAGE_NAME = "lineage.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
LINEAGE_KINDS = ("sft_adapter", "dpo_adapter", "merged")

# Hashing a 32B model reads ~65 GB; a stage asks for the same folder more than once.
_HASH_CACHE: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def _weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.glob("*.safetensors") if p.is_file())


def weights_hash(model_dir: str | Path) -> str:
    """sha256 over a model folder's safetensors files (names and contents).

    Config and tokenizer files are left out: saving the same weights with another library version
    rewrites config.json without changing the model.

    Raises:
        LineageError: the folder holds no safetensors weights.
    """
    root = Path(model_dir).resolve()
    files = _weight_files(root)
    if not files:
        raise LineageError(f"{root}: no *.safetensors weights to identify the model by")
    key = (str(root), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode())
            digest.update(sha256_file(path).encode())
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def adapter_hash(adapter_dir: str | Path) -> str:
    """sha256 of an adapter's weights file.

    Raises:
        LineageError: the folder has no ``adapter_model.safetensors``.
    """
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise LineageError(f"{adapter_dir}: no {ADAPTER_WEIGHTS}; is this a PEFT adapter folder?")
    return sha256_file(path)


@dataclass(frozen=True)
class Lineage:
    """What a checkpoint is and what it must be loaded onto.

    Attributes:
        kind: ``sft_adapter``, ``dpo_adapter`` or ``merged``.
        parent_path: the model folder trained on or merged into, relative to the checkpoint's folder
            inside a run (``portable_path``), absolute outside it.
        parent_hash: ``weights_hash`` of that folder.
        quantization: how the parent was held while training (``none``, ``nf4``, ``int8``); for a
            merged model, how the SFT adapter was trained, which is how DPO and evaluation hold it.
        dtype: the dtype of the unquantised weights while training, or of the merged weights.
        eos_token / eos_token_id: read from the tokenizer and checked against the generation config.
        trained_modules: projection names that got LoRA weights (empty for a merged model).
        adapter_hash: for a merged model, the adapter merged in.
        weights_hash: for a merged model, the hash of its own weights.
        data_hashes: sha256 of each training file by name.
        config: the resolved settings the checkpoint was made with.
        versions: library versions.
        extra: stage-specific facts (merge mode, effective batch, ...).
    """

    kind: str
    parent_path: str
    parent_hash: str
    quantization: str
    dtype: str
    eos_token: str
    eos_token_id: int
    trained_modules: tuple[str, ...] = ()
    adapter_hash: str | None = None
    weights_hash: str | None = None
    data_hashes: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["trained_modules"] = list(self.trained_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = LINEAGE_NAME) -> Lineage:
        """Raises: LineageError naming the file and the missing or unknown field."""
        known = {name for name in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LineageError(f"{source}: unknown field(s) {', '.join(unknown)}")
        for name in ("kind", "parent_path", "parent_hash", "quantization", "dtype", "eos_token", "eos_token_id"):
            if name not in data:
                raise LineageError(f"{source}: field '{name}' is missing")
        if data["kind"] not in LINEAGE_KINDS:
            raise LineageError(f"{source}: field 'kind' is {data['kind']!r}, expected one of {', '.join(LINEAGE_KINDS)}")
        values = dict(data)
        values["trained_modules"] = tuple(values.get("trained_modules") or ())
        return cls(**values)


def portable_path(path: str | Path, folder: str | Path) -> str:
    """``path`` as a file inside ``folder`` records it: relative to ``folder`` when both lie in one run
    directory (at most two levels up: ``../model`` from ``merged``, ``../../merged`` from
    ``dpo/adapter``), else absolute (a base model given as ``model.path``).

    Anything a later stage hashes holds no path of the run directory itself, so a copied or moved
    run, rerun with ``--force``, writes the same bytes and stops the cascade there.
    """
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, os.path.abspath(folder))
    parts = Path(relative).parts
    ups = next((index for index, part in enumerate(parts) if part != ".."), len(parts))
    return relative if ups <= 2 else absolute


def portable_paths_in_files(folder: str | Path, paths: dict[str, str], names: tuple[str, ...]) -> None:
    """Replace each absolute path in ``paths`` by its portable form in the text files ``names`` of
    ``folder`` (PEFT writes the base model's path into an adapter's ``README.md`` and
    ``adapter_config.json``; a JSON string is rewritten as JSON, so escapes stay valid)."""
    import json

    for name in names:
        file = Path(folder) / name
        if not file.is_file():
            continue
        text = original = file.read_text(encoding="utf-8")
        for absolute, portable in sorted(paths.items(), key=lambda item: -len(item[0])):
            text = text.replace(json.dumps(absolute)[1:-1], json.dumps(portable)[1:-1]).replace(absolute, portable)
        if text != original:
            atomic_write_text(file, text)


def write_lineage(folder: str | Path, lineage: Lineage) -> Path:
    return atomic_write_json(Path(folder) / LINEAGE_NAME, lineage.to_dict())


def read_lineage(folder: str | Path, *, required: bool = True) -> Lineage | None:
    """The lineage of an adapter or merged-model folder.

    Raises:
        LineageError: the file is missing (when ``required``), unreadable, or malformed.
    """
    path = Path(folder) / LINEAGE_NAME
    if not path.is_file():
        if not required:
            return None
        raise LineageError(
            f"{path}: missing; this folder was not written by a stage1 training stage, so what it belongs on is unknown"
        )
    from stage1.core.errors import InputError
    from stage1.io.readers import read_json_file

    try:
        data = read_json_file(path)
    except InputError as error:
        raise LineageError(f"unreadable: {error.describe()}") from None
    if not isinstance(data, dict):
        raise LineageError(f"{path}: expected a JSON object")
    return Lineage.from_dict(data, source=str(path))


def check_parent(lineage: Lineage, model_dir: str | Path, *, what: str = "adapter") -> None:
    """Refuse to put a checkpoint on anything but the weights it was made from.

    Raises:
        LineageError: naming both hashes and the recorded parent path.
    """
    actual = weights_hash(model_dir)
    if actual != lineage.parent_hash:
        raise LineageError(
            f"this {what} was made from {lineage.parent_path} (weights {lineage.parent_hash[:12]}), "
            f"but {model_dir} has weights {actual[:12]}; load it onto its recorded parent"
        )
