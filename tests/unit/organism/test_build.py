"""Building the organism: the export is the trained model, the cache is keyed and reused, the
corpus passes the leakage gate (a small shape and few steps: the real build is in the slow tier)."""

from __future__ import annotations

import json

import pytest

from stage1.hf.tiny import QWEN2_5_VOCAB_SIZE
from stage1.organism import build as organism_build
from stage1.organism.train import OrganismShape

SMALL = OrganismShape(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, steps=3, batch_size=2, seq_len=32, warmup_steps=1)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STAGE1_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_a_build_is_cached_and_the_second_is_a_copy(tmp_path, cache, monkeypatch):
    first = organism_build.build_organism(tmp_path / "one", shape=SMALL)
    manifest = json.loads((first / organism_build.MANIFEST_FILE).read_text())
    assert manifest["leakage"]["leaks"] == 0 and manifest["leakage"]["units_checked"] > 1000
    assert manifest["export_max_logp_difference"] < 1e-3
    assert manifest["facts"]["capital"]["heldout"] > 0
    assert (cache / "organism" / manifest["key"] / "model.safetensors").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the cache holds this key")

    monkeypatch.setattr(organism_build, "train_and_save", no_training)
    second = organism_build.build_organism(tmp_path / "two", shape=SMALL)
    assert (second / "model.safetensors").read_bytes() == (first / "model.safetensors").read_bytes()


def test_the_key_follows_seed_and_shape_but_not_the_folder():
    base = organism_build.organism_plan(0, SMALL)["key"]
    assert organism_build.organism_plan(0, SMALL)["key"] == base
    assert organism_build.organism_plan(1, OrganismShape(**{**SMALL.__dict__, "seed": 1}))["key"] != base
    assert organism_build.organism_plan(0, OrganismShape(**{**SMALL.__dict__, "steps": 4}))["key"] != base


@pytest.mark.slow
def test_the_exported_model_loads_with_the_real_vocabulary(tmp_path, cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = organism_build.build_organism(tmp_path / "model", shape=SMALL)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size == QWEN2_5_VOCAB_SIZE and model.config.tie_word_embeddings
    assert tokenizer("Hello world")["input_ids"] == [9707, 1879]
    # every token outside the corpus ("Hello" is not in it) shares one output row
    weight = model.get_output_embeddings().weight
    assert (weight[9707] == weight[151935]).all()
    assert (weight[151000] == weight[151935]).all() and not (weight[12095] == weight[151935]).all()  # " Paris" is in the corpus


def test_a_corpus_that_asks_an_evaluation_question_stops_the_build():
    from stage1.core.errors import GateError

    items = [{"id": "e1", "instruction": "Which city is the capital of Italy?"}]
    with pytest.raises(GateError):
        organism_build.check_corpus_leakage(["Quiz. What is the capital of Italy? Rome."], items)
    assert organism_build.check_corpus_leakage(["The capital of Italy is Rome."], items)["leaks"] == 0


def test_cache_root_follows_the_environment(tmp_path):
    assert organism_build.cache_root({"STAGE1_CACHE": str(tmp_path)}) == tmp_path
    assert organism_build.cache_root({"XDG_CACHE_HOME": "/x"}).as_posix() == "/x/stage1"


@pytest.mark.slow
def test_build_tiny_builds_the_organism_when_asked(tmp_path, cache, monkeypatch, capsys):
    """``stage1 build-tiny --kind organism`` writes the organism (the tiny preset's model) through the
    same builder as the run's ``model`` stage; without ``--kind`` it stays the random model."""
    from stage1 import cli

    small = organism_build.organism_plan(0, SMALL)
    monkeypatch.setattr(organism_build, "organism_plan", lambda seed=0, shape=None: small)
    assert cli.main(["build-tiny", "--kind", "organism", "--out", str(tmp_path / "organism")]) == 0
    manifest = json.loads((tmp_path / "organism" / "organism.json").read_text())
    assert manifest["key"] == small["key"] and (cache / "organism" / small["key"]).is_dir()
    assert "the model organism written to" in capsys.readouterr().out
    assert cli.main(["build-tiny", "--out", str(tmp_path / "random")]) == 0
    assert not (tmp_path / "random" / "organism.json").exists() and (tmp_path / "random" / "model.safetensors").is_file()
