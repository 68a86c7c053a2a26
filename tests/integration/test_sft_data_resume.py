"""Resumable SFT-data generation on the tiny model, in process: an interrupted run, rerun, writes the
same bytes as an uninterrupted one; a rerun with every batch journalled loads no model; each row's
samples depend on the row, not on the batch it was decoded in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stage1.core.generation import GenerationSettings
from stage1.core.seeds import row_seed
from stage1.hf.generation import TransformersBackend
from stage1.io.journal import JOURNAL_NAME, parse_journal
from stage1.sft_data.settings import SFTDataSettings
from stage1.sft_data.stage import run_sft_data

ROOT = Path(__file__).resolve().parents[2]
EXEMPLARS = ROOT / "stage1" / "pools" / "sft" / "exemplars.jsonl"
SAMPLING = GenerationSettings(max_new_tokens=24, batch_size=4, do_sample=True, temperature=0.7)
SETTINGS = SFTDataSettings(source="model", samples_per_instruction=2, max_per_instruction=2, num_fewshot=2, generation=SAMPLING)

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def instructions(tmp_path_factory) -> Path:
    rows = [json.loads(line) for line in (ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl").read_text().splitlines()[:8]]
    path = tmp_path_factory.mktemp("instructions") / "instructions.jsonl"
    path.write_text("".join(json.dumps({k: r[k] for k in ("id", "instruction", "category")}) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def reference(ending_model, instructions, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    manifest = run_sft_data(SETTINGS, instructions_path=instructions, out_dir=out, model_dir=ending_model, exemplars_path=EXEMPLARS)
    assert manifest["counts"]["train"] >= 3, "the nudged model must leave rows to compare"
    assert manifest["generation_journal"] == {"reused": 0, "generated": 16, "batches": 4}
    assert not (out / JOURNAL_NAME).exists(), "the journal is removed once the manifest is written"
    return out


def same_outputs(first: Path, second: Path) -> None:
    for name in ("train.jsonl", "heldout.jsonl"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_an_interrupted_generation_resumes_to_the_same_bytes(reference, ending_model, instructions, tmp_path, monkeypatch):
    real = TransformersBackend.generate_batch
    calls = []

    def interrupted(self, prompts, settings, seeds):
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a kill between batches leaves
        calls.append(len(prompts))
        return real(self, prompts, settings, seeds)

    monkeypatch.setattr(TransformersBackend, "generate_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sft_data(SETTINGS, instructions_path=instructions, out_dir=tmp_path, model_dir=ending_model, exemplars_path=EXEMPLARS)
    journal = tmp_path / JOURNAL_NAME
    assert not (tmp_path / "train.jsonl").exists() and not (tmp_path / "manifest.json").exists()
    with open(journal, "ab") as handle:
        handle.write(b'{"key": ["factual_qa-00')  # and a kill mid-write on top
    monkeypatch.setattr(TransformersBackend, "generate_batch", real)

    manifest = run_sft_data(SETTINGS, instructions_path=instructions, out_dir=tmp_path, model_dir=ending_model, exemplars_path=EXEMPLARS)
    same_outputs(reference, tmp_path)
    assert manifest["generation_journal"] == {"reused": 8, "generated": 8, "batches": 2}
    assert manifest["counts"] == json.loads((reference / "manifest.json").read_text())["counts"]
    assert not journal.exists()


def test_a_rerun_after_the_last_batch_loads_no_model(reference, ending_model, instructions, tmp_path, monkeypatch):
    import stage1.hf.models
    import stage1.sft_data.stage

    def fail_after_generation(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(stage1.sft_data.stage, "filter_candidates", fail_after_generation)
        with pytest.raises(KeyboardInterrupt):
            run_sft_data(SETTINGS, instructions_path=instructions, out_dir=tmp_path, model_dir=ending_model, exemplars_path=EXEMPLARS)
    assert len(parse_journal((tmp_path / JOURNAL_NAME).read_bytes(), _fingerprint_of(tmp_path), None).done) == 16

    def no_model(*args, **kwargs):
        raise AssertionError("every row is journalled: no model should load")

    monkeypatch.setattr(stage1.hf.models, "load_model", no_model)
    manifest = run_sft_data(SETTINGS, instructions_path=instructions, out_dir=tmp_path, model_dir=ending_model, exemplars_path=EXEMPLARS)
    same_outputs(reference, tmp_path)
    assert manifest["generation_journal"] == {"reused": 16, "generated": 0, "batches": 0}


def _fingerprint_of(folder: Path) -> str:
    return json.loads((folder / JOURNAL_NAME).read_text().splitlines()[0])["fingerprint"]


def test_a_changed_model_reuses_nothing(reference, ending_model, tiny_model_dir, instructions, tmp_path, monkeypatch):
    """A journal written for the nudged model is not reused for the plain one (same config, other weights)."""
    import stage1.sft_data.stage

    with monkeypatch.context() as patch:
        patch.setattr(stage1.sft_data.stage, "filter_candidates", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run_sft_data(SETTINGS, instructions_path=instructions, out_dir=tmp_path, model_dir=ending_model, exemplars_path=EXEMPLARS)
    assert (tiny_model_dir / "config.json").read_bytes() == (ending_model / "config.json").read_bytes()

    def must_generate(self, prompts, settings, seeds):
        raise LookupError("generating again, as it must")

    monkeypatch.setattr(TransformersBackend, "generate_batch", must_generate)
    with pytest.raises(LookupError):
        run_sft_data(SETTINGS, instructions_path=instructions, out_dir=tmp_path, model_dir=tiny_model_dir, exemplars_path=EXEMPLARS)
    stale = tmp_path / "generations.stale.jsonl"
    assert len(parse_journal(stale.read_bytes(), json.loads(stale.read_text().splitlines()[0])["fingerprint"], None).done) == 16
    assert len(parse_journal((tmp_path / JOURNAL_NAME).read_bytes(), _fingerprint_of(tmp_path), None).done) == 0


def test_each_row_samples_the_same_text_whatever_batch_it_is_in(ending_model):
    from stage1.hf.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(ending_model)
    backend = TransformersBackend(load_model(ending_model), tokenizer)
    prompts = [f"Instruction: Name thing number {i}.\nResponse:" for i in range(5)]
    seeds = [row_seed(0, 0, f"q{i}", 0) for i in range(5)]
    settings = GenerationSettings(max_new_tokens=8, batch_size=1, do_sample=True, temperature=0.7)
    alone = backend.generate(prompts, settings, seeds=seeds)
    together = backend.generate(prompts, GenerationSettings(**{**settings.__dict__, "batch_size": 5}), seeds=seeds)
    assert [g.completion_text for g in alone] == [g.completion_text for g in together]
    shuffled = backend.generate(prompts[::-1], settings, seeds=seeds[::-1])[::-1]
    assert [g.completion_text for g in shuffled] == [g.completion_text for g in alone]
    other = backend.generate(prompts, settings, seeds=[seed + 1 for seed in seeds])
    assert [g.completion_text for g in other] != [g.completion_text for g in alone], "the seed decides the sample"
