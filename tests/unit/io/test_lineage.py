"""Lineage files: round trip, weights identity, and refusal to load onto other weights."""

from __future__ import annotations

import json

import pytest

from stage1.core.errors import LineageError
from stage1.io.lineage import Lineage, adapter_hash, check_parent, read_lineage, weights_hash, write_lineage


def _lineage(parent_hash: str = "a" * 64, **changes) -> Lineage:
    values = dict(kind="sft_adapter", parent_path="/models/base", parent_hash=parent_hash, quantization="nf4",
                  dtype="bfloat16", eos_token="<|endoftext|>", eos_token_id=151643,
                  trained_modules=("down_proj", "q_proj"), data_hashes={"train": "b" * 64}, config={"sft": {"learning_rate": 1e-4}})
    values.update(changes)
    return Lineage(**values)


def test_round_trip_through_the_file(tmp_path):
    lineage = _lineage()
    write_lineage(tmp_path, lineage)
    assert read_lineage(tmp_path) == lineage
    assert json.loads((tmp_path / "lineage.json").read_text())["trained_modules"] == ["down_proj", "q_proj"]


def test_missing_and_malformed_files_are_lineage_errors(tmp_path):
    with pytest.raises(LineageError, match="missing"):
        read_lineage(tmp_path)
    assert read_lineage(tmp_path, required=False) is None
    (tmp_path / "lineage.json").write_text("{not json")
    with pytest.raises(LineageError, match="unreadable"):
        read_lineage(tmp_path)
    data = _lineage().to_dict()
    del data["parent_hash"]
    (tmp_path / "lineage.json").write_text(json.dumps(data))
    with pytest.raises(LineageError, match="parent_hash"):
        read_lineage(tmp_path)
    (tmp_path / "lineage.json").write_text(json.dumps({**_lineage().to_dict(), "kind": "lora"}))
    with pytest.raises(LineageError, match="kind"):
        read_lineage(tmp_path)
    (tmp_path / "lineage.json").write_text(json.dumps({**_lineage().to_dict(), "surprise": 1}))
    with pytest.raises(LineageError, match="surprise"):
        read_lineage(tmp_path)


def test_weights_hash_follows_the_weights_not_the_config(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights-1")
    (model / "config.json").write_text("{}")
    first = weights_hash(model)
    (model / "config.json").write_text('{"transformers_version": "later"}')
    assert weights_hash(model) == first
    (model / "model.safetensors").write_bytes(b"weights-2")
    assert weights_hash(model) != first
    with pytest.raises(LineageError, match="safetensors"):
        weights_hash(tmp_path / "empty_dir_that_is_missing")


def test_check_parent_refuses_other_weights(tmp_path):
    base, other = tmp_path / "base", tmp_path / "other"
    for folder, content in ((base, b"base"), (other, b"other")):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(content)
    lineage = _lineage(parent_hash=weights_hash(base))
    check_parent(lineage, base)
    with pytest.raises(LineageError) as error:
        check_parent(lineage, other)
    assert "/models/base" in str(error.value)


def test_adapter_hash_needs_adapter_weights(tmp_path):
    with pytest.raises(LineageError, match="adapter_model.safetensors"):
        adapter_hash(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"lora")
    assert len(adapter_hash(tmp_path)) == 64
