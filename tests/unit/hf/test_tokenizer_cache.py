"""The tokenizer is built once per process for each distinct set of tokenizer files."""

from __future__ import annotations

import shutil

import pytest

from stage1.hf import tokenizer_cache
from stage1.hf.models import load_tokenizer


@pytest.fixture()
def fresh_cache():
    tokenizer_cache.clear()
    yield
    tokenizer_cache.clear()


def test_the_same_files_in_two_folders_are_loaded_once(tiny_model_dir, tmp_path, fresh_cache):
    copy = tmp_path / "merged"
    shutil.copytree(tiny_model_dir, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    before = tokenizer_cache.loads
    first, second = load_tokenizer(tiny_model_dir), load_tokenizer(copy)
    assert second is first and tokenizer_cache.loads == before + 1
    assert first("Hello world").input_ids == [9707, 1879] and first.pad_token == first.eos_token and first.chat_template is None


def test_a_changed_file_or_a_changed_tokenizer_is_loaded_again(tiny_model_dir, tmp_path, fresh_cache):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    first = load_tokenizer(folder)
    first.pad_token = "<|im_end|>"  # a trainer given pad_token sets it on the tokenizer it was handed
    second = load_tokenizer(folder)
    assert second is not first and second.pad_token == second.eos_token
    config = folder / "tokenizer_config.json"
    config.write_text(config.read_text() + "\n")  # the same settings, other bytes: a cache on paths would miss it
    third = load_tokenizer(folder)
    assert third is not second, "a tokenizer file whose bytes changed is a different tokenizer"


def test_a_model_folder_made_from_another_gets_its_tokenizer_bytes_and_no_second_build(tiny_model_dir, tmp_path, fresh_cache):
    """What the merge writes beside the merged weights: the base's tokenizer files as they are, so the
    merged folder is the same cache entry (re-saving the tokenizer rewrote them into other bytes)."""
    merged = tmp_path / "merged"
    merged.mkdir()
    shutil.copyfile(tiny_model_dir / "config.json", merged / "config.json")
    copied = tokenizer_cache.copy_tokenizer_files(tiny_model_dir, merged)
    assert "tokenizer.json" in copied and "tokenizer_config.json" in copied
    assert all((merged / name).read_bytes() == (tiny_model_dir / name).read_bytes() for name in copied)
    assert tokenizer_cache.tokenizer_key(merged, False) == tokenizer_cache.tokenizer_key(tiny_model_dir, False)
    before = tokenizer_cache.loads
    assert load_tokenizer(merged) is load_tokenizer(tiny_model_dir) and tokenizer_cache.loads == before + 1
    resaved = tmp_path / "resaved"
    load_tokenizer(tiny_model_dir).save_pretrained(resaved)
    shutil.copyfile(tiny_model_dir / "config.json", resaved / "config.json")
    assert tokenizer_cache.tokenizer_key(resaved, False) != tokenizer_cache.tokenizer_key(tiny_model_dir, False), \
        "re-saving rewrites the files: the reason the merge copies them"
