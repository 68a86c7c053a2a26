"""The bad-input corpus (fixtures/bad/cases.json): every case exits with its code and message, prints
no traceback, finishes within its time limit, and leaves the output folder byte for byte as it was
(nothing created, nothing changed: its hash before and after is compared)."""

from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from stage1 import cli

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fixtures" / "bad"
CASES = json.loads((CORPUS / "cases.json").read_text())["cases"]
CASE_SECONDS = 30  # a case that runs longer hangs: the alarm turns it into a failure, not a stuck suite


def _snapshot(folder: Path) -> str:
    """One hash over every file's path and bytes (and every folder's path) under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        if path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _safetensors(tensors: dict[str, int]) -> bytes:
    """A safetensors file of float32 vectors (name -> length), written by hand: the header layout is
    the format's spec (8-byte little-endian length, JSON header, data)."""
    header, offset = {}, 0
    for name, length in tensors.items():
        header[name] = {"dtype": "F32", "shape": [length], "data_offsets": [offset, offset + 4 * length]}
        offset += 4 * length
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + b"\0" * offset


def _model_folder(folder: Path, tiny: Path, *, config: dict | str | None = None, weights: bytes | None = None) -> Path:
    """A copy of the tiny model's folder (weights linked, not copied) with its config.json or weights replaced."""
    folder.mkdir()
    for path in tiny.iterdir():
        (folder / path.name).symlink_to(path)
    if config is not None:
        (folder / "config.json").unlink()
        (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is not None:
        (folder / "model.safetensors").unlink()
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def _generate(folder: Path, tiny: Path) -> None:
    """Inputs that cannot be committed (FIFOs, symlinks, devices), are large, or derive from the tiny model."""
    row = {"id": "big", "instruction": "word " * 209_716, "response": "Fine.", "category": "x"}
    (folder / "huge.jsonl").write_text(json.dumps(row) + "\n")
    deep = "[" * 100_000 + "]" * 100_000
    (folder / "deep.json").write_text(deep)
    (folder / "deep.jsonl").write_text('{"id": "a", "instruction": "Hi?", "response": "Hello.", "x": ' + deep + "}\n")
    (folder / "deep_object.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    (folder / "deep_200.jsonl").write_text('{"id": "a", "x": ' + "[" * 200 + "]" * 200 + "}\n")
    (folder / "bigint.jsonl").write_text('{"id": "a", "instruction": "Hi?", "response": "Hello."}\n{"id": ' + "9" * 5000 + "}\n")
    (folder / "bigint_first.jsonl").write_text('{"id": ' + "9" * 5000 + "}\n")
    (folder / "bigint.json").write_text("[" + "1" * 5000 + "]")
    (folder / "bigint_golden.json").write_text('{"rates": ' + "7" * 4301 + "}")
    (folder / "big_field.csv").write_text("id,instruction,response\na,Hi?,Hello.\nb," + "x" * 140_000 + ",Fine.\n")
    for name in ("fifo.jsonl", "fifo.json", "fifo.csv", "fifo.yaml"):
        os.mkfifo(folder / name)
    (folder / "loop_a.jsonl").symlink_to(folder / "loop_b.jsonl")
    (folder / "loop_b.jsonl").symlink_to(folder / "loop_a.jsonl")
    (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
    (folder / "loop.json").symlink_to(folder / "loop.json")
    (folder / "dangling.jsonl").symlink_to(folder / "no-such-target.jsonl")
    (folder / "zero.jsonl").symlink_to("/dev/zero")
    (folder / "urandom.csv").symlink_to("/dev/urandom")
    (folder / "folder.jsonl").mkdir()
    # Model folders: each one thing wrong, the rest the tiny model's.
    config = json.loads((tiny / "config.json").read_text())
    _model_folder(folder / "model_llama_config", tiny, config={**config, "model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    _model_folder(folder / "model_auto_map", tiny, config={**config, "auto_map": {"AutoModelForCausalLM": "modeling_evil.Model"}})
    _model_folder(folder / "model_no_model_type", tiny, config={k: v for k, v in config.items() if k != "model_type"})
    _model_folder(folder / "model_mistral", tiny, config={**config, "model_type": "mistral"})
    _model_folder(folder / "model_deep_config", tiny, config='{"model_type": "qwen2", "x": ' + deep + "}")
    _model_folder(folder / "model_bigint_config", tiny, config='{"model_type": "qwen2", "vocab_size": ' + "1" * 5000 + "}")
    _model_folder(folder / "model_bad_config", tiny, config='{"model_type": "qwen2",')
    _model_folder(folder / "model_empty_weights", tiny, weights=b"")
    _model_folder(folder / "model_truncated_weights", tiny, weights=(tiny / "model.safetensors").read_bytes()[:4096])
    _model_folder(folder / "model_garbage_weights", tiny, weights=(20).to_bytes(8, "little") + b"not json at all here")
    no_bias = {name: 4 for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight")}
    _model_folder(folder / "model_llama_weights", tiny, weights=_safetensors(no_bias))
    fifo_config = _model_folder(folder / "model_fifo_config", tiny)
    (fifo_config / "config.json").unlink()
    os.mkfifo(fifo_config / "config.json")
    (folder / "model_empty").mkdir()
    shutil.copytree(CORPUS / "files" / "foreign_adapter", folder / "model_adapter_only")
    (folder / "model_is_a_file").write_text("weights\n")
    for name, text in (("adapter_deep_lineage", '{"x": ' + deep + "}"), ("adapter_bigint_lineage", '{"x": ' + "5" * 4400 + "}")):
        adapter = shutil.copytree(CORPUS / "files" / "foreign_adapter", folder / name)
        (adapter / "lineage.json").write_text(text)
    (folder / "a_file").write_text("not a folder\n")


@pytest.fixture(scope="module")
def generated(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    _generate(folder, tiny_model_dir)
    import peft  # noqa: F401  (imported once here, so the first case's time limit does not pay for it)
    import trl  # noqa: F401
    return folder


def test_corpus_has_at_least_150_cases_with_unique_names():
    assert len(CASES) >= 150
    assert len({case["name"] for case in CASES}) == len(CASES)


def test_every_bad_input_exits_2_and_only_a_failed_gate_exits_1():
    """Bad input is exit 2; a case marked ``gate`` is good input whose leakage gate fails (exit 1)."""
    assert all(case["exit"] == 2 for case in CASES if not case.get("gate"))
    assert all(case["exit"] == 1 for case in CASES if case.get("gate"))


def _alarm(signum, frame):
    raise TimeoutError(f"the case ran past {CASE_SECONDS} s")


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_bad_input_case(case, tmp_path, generated, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for name, value in case.get("env", {}).items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier-output.jsonl").write_text('{"kept": true}\n')
    before = _snapshot(out)
    values = {
        "files": str(CORPUS / "files"),
        "fixtures": str(ROOT / "fixtures"),
        "pools": str(ROOT / "stage1" / "pools"),  # the shipped pools (package data)
        "generated": str(generated),
        "model": str(tiny_model_dir),
        "out": str(out),
    }
    argv = [part.format(**values) for part in case["argv"]]
    # The alarm stops a Python-level loop; a read blocked in the kernel (a FIFO) may not see it when
    # another thread takes the signal, so faulthandler then dumps every stack and ends the run.
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        faulthandler.dump_traceback_later(CASE_SECONDS + 15, exit=True, file=sys.__stderr__)
        signal.alarm(CASE_SECONDS)
        code = cli.main(argv)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    stderr = capsys.readouterr().err
    assert code == case["exit"], stderr
    for message in case["messages"]:
        assert message in stderr, f"expected {message!r} in: {stderr}"
    assert "Traceback" not in stderr
    assert _snapshot(out) == before, "a failing command must not create or change outputs"
