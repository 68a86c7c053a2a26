"""The bad-input corpus (fixtures/bad/cases.json): every case exits with its code and message, and
leaves the output folder exactly as it was (nothing created, nothing changed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stage1 import cli

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fixtures" / "bad"
CASES = json.loads((CORPUS / "cases.json").read_text())["cases"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """Inputs too large to commit: a 1 MB instruction."""
    folder = tmp_path_factory.mktemp("generated")
    row = {"id": "big", "instruction": "word " * 209_716, "response": "Fine.", "category": "x"}
    (folder / "huge.jsonl").write_text(json.dumps(row) + "\n")
    return folder


def test_corpus_has_at_least_thirty_cases():
    assert len(CASES) >= 30
    assert len({case["name"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_bad_input_case(case, tmp_path, generated, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier-output.jsonl").write_text('{"kept": true}\n')
    before = _snapshot(out)
    values = {
        "files": str(CORPUS / "files"),
        "fixtures": str(ROOT / "fixtures"),
        "generated": str(generated),
        "model": str(tiny_model_dir),
        "out": str(out),
    }
    argv = [part.format(**values) for part in case["argv"]]
    code = cli.main(argv)
    stderr = capsys.readouterr().err
    assert code == case["exit"], stderr
    for message in case["messages"]:
        assert message in stderr, f"expected {message!r} in: {stderr}"
    assert "Traceback" not in stderr
    assert _snapshot(out) == before, "a failing command must not create or change outputs"
