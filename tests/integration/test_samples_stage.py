"""The samples stage on the tiny model, in process: k samples per instruction scored by the shared
criteria, one policy negative or one skip reason per instruction, the same bytes on a rerun, and a
run interrupted mid-way resuming from its journal to those bytes. Mechanics only: the tiny model's
samples are gibberish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stage1.core.criteria import CRITERION_NAMES
from stage1.core.records import NegativeRecord, SFTExample
from stage1.hf.generation import TransformersBackend
from stage1.io.journal import JOURNAL_NAME
from stage1.io.records import read_records
from stage1.samples.settings import PolicySettings
from stage1.samples.stage import NEGATIVES_FILE, SAMPLES_FILE, SKIP_REASONS, read_back, run_samples

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = PolicySettings(k=3, max_new_tokens=12, batch_size=4, temperature=1.0, seed=3)
INSTRUCTIONS = 6

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def sft_file(tmp_path_factory) -> Path:
    lines = (ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl").read_text().splitlines()[:INSTRUCTIONS]
    path = tmp_path_factory.mktemp("sft") / "train.jsonl"
    path.write_text("".join(json.dumps(SFTExample.from_dict(json.loads(line)).to_dict()) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def reference(ending_model, sft_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    run_samples(SETTINGS, sft_path=sft_file, model_dir=ending_model, out_dir=out)
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_k_samples_per_instruction_scored_by_the_shared_criteria(reference, sft_file):
    rows = [json.loads(line) for line in (reference / SAMPLES_FILE).read_text().splitlines()]
    examples = read_records(sft_file, SFTExample)
    assert [row["instruction_id"] for row in rows] == [e.id for e in examples]
    for row in rows:
        assert [s["number"] for s in row["samples"]] == list(range(SETTINGS.k))
        for sample in row["samples"]:
            assert set(sample["verdicts"]) == set(CRITERION_NAMES)  # every criterion (the file sorts keys)
            assert sample["verdicts"]["factually_correct"] is None and sample["verdicts"]["follows_constraint"] is None
            assert sample["verdicts"]["stopped_with_end"] == (sample["stop_reason"] == "end" and bool(sample["response"].strip()))
    assert not (reference / JOURNAL_NAME).exists()


def test_one_negative_or_one_skip_reason_per_instruction_with_source_and_kind(reference):
    manifest = _manifest(reference)
    counts = manifest["counts"]
    assert counts["instructions"] == INSTRUCTIONS and counts["samples"] == INSTRUCTIONS * SETTINGS.k
    assert set(counts["skipped"]) == set(SKIP_REASONS)
    assert counts["pairs"] + sum(counts["skipped"].values()) == INSTRUCTIONS
    assert counts["pairs"] >= 1, "the nudged model must leave failing samples to reject"
    negatives = read_records(reference / NEGATIVES_FILE, NegativeRecord)
    assert len(negatives) == counts["pairs"]
    rows = {json.loads(line)["instruction_id"]: json.loads(line)["samples"] for line in (reference / SAMPLES_FILE).read_text().splitlines()}
    for negative in negatives:
        assert negative.negative_source == "policy" and negative.kind.startswith("policy:")
        number = int(negative.method.rsplit("_", 1)[1])
        rejected = rows[negative.instruction_id][number]
        assert read_back(rejected["completion_text"]) == negative.completion
        assert negative.kind == "policy:" + "+".join(n for n in CRITERION_NAMES if rejected["verdicts"][n] is False)
        assert rejected["score"] == min(s["score"] for s in rows[negative.instruction_id] if s["completion_text"].strip())
    assert counts["by_kind"] == {kind: sum(n.kind == kind for n in negatives) for kind in {n.kind for n in negatives}}
    assert counts["selection_criteria"] == list(CRITERION_NAMES)


def test_the_same_seed_inputs_and_model_give_the_same_bytes(reference, ending_model, sft_file, tmp_path):
    run_samples(SETTINGS, sft_path=sft_file, model_dir=ending_model, out_dir=tmp_path)
    for name in (SAMPLES_FILE, NEGATIVES_FILE):
        assert (tmp_path / name).read_bytes() == (reference / name).read_bytes(), name
    other = tmp_path / "other-seed"
    run_samples(PolicySettings(**{**SETTINGS.__dict__, "seed": 4}), sft_path=sft_file, model_dir=ending_model, out_dir=other)
    assert (other / SAMPLES_FILE).read_bytes() != (reference / SAMPLES_FILE).read_bytes()


def test_an_interrupted_samples_stage_resumes_from_its_journal(reference, ending_model, sft_file, tmp_path, monkeypatch):
    real = TransformersBackend.generate_batch
    calls = []

    def interrupted(self, prompts, settings, seeds):
        if len(calls) == 2:
            raise RuntimeError("killed mid-run")
        calls.append(len(prompts))
        return real(self, prompts, settings, seeds)

    monkeypatch.setattr(TransformersBackend, "generate_batch", interrupted)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        run_samples(SETTINGS, sft_path=sft_file, model_dir=ending_model, out_dir=tmp_path)
    assert (tmp_path / JOURNAL_NAME).exists() and not (tmp_path / "manifest.json").exists()
    monkeypatch.setattr(TransformersBackend, "generate_batch", real)
    manifest = run_samples(SETTINGS, sft_path=sft_file, model_dir=ending_model, out_dir=tmp_path)
    total = INSTRUCTIONS * SETTINGS.k
    assert manifest["generation_journal"]["reused"] == 2 * SETTINGS.batch_size
    assert manifest["generation_journal"]["generated"] == total - 2 * SETTINGS.batch_size
    for name in (SAMPLES_FILE, NEGATIVES_FILE):
        assert (tmp_path / name).read_bytes() == (reference / name).read_bytes(), name
    assert not (tmp_path / JOURNAL_NAME).exists()
