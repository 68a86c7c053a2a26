"""Presets ship inside the package, and paths mean what they say wherever stage1 runs from."""

from __future__ import annotations

from pathlib import Path

import pytest

from stage1.config.presets import POOLS_DIR, PRESETS_DIR, resolve_preset
from stage1.stages.config import load_config


@pytest.mark.parametrize("name", ["tiny", "tiny-random", "tiny-qlora", "qwen2.5-32b"])
def test_the_shipped_presets_name_pools_that_exist_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(name)
    for path in (config.data.instructions, config.data.exemplars, config.data.eval_items):
        assert Path(path).is_absolute() and Path(path).is_file(), path
        assert POOLS_DIR in Path(path).parents
    assert resolve_preset(name) == PRESETS_DIR / f"{name}.yaml"


def test_the_default_is_the_organism_and_tiny_random_keeps_random_weights():
    """`stage1 run` runs on the model organism; the random-weight model is a preset of its own."""
    assert load_config(None).model.tiny == "organism" and load_config(None).model.path is None
    random = load_config("tiny-random")
    assert random.model.tiny == "random" and random.model.path is None
    assert load_config("tiny-qlora").model.tiny == "random"


def test_the_32b_architecture_file_resolves_beside_its_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    architecture = Path(load_config("qwen2.5-32b").model.architecture)
    assert architecture == PRESETS_DIR / "architectures" / "qwen2.5-32b.json" and architecture.is_file()


def test_a_relative_path_in_a_config_file_is_relative_to_that_file(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "config.yaml").write_text("data:\n  instructions: data/mine.jsonl\n  eval_items: /abs/items.jsonl\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(str(Path("..") / "project" / "config.yaml"))
    assert config.data.instructions == str(project / "data" / "mine.jsonl")
    assert config.data.eval_items == "/abs/items.jsonl", "an absolute path is kept as written"
    assert config.data.exemplars == str(POOLS_DIR / "sft" / "exemplars.jsonl"), "a key the file leaves out keeps the package default"


def test_a_path_given_with_set_is_relative_to_the_users_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config("tiny", ["data.instructions=my/pool.jsonl", "model.path=models/base"])
    assert config.data.instructions == "my/pool.jsonl" and Path(config.data.instructions).resolve() == tmp_path / "my" / "pool.jsonl"
    assert config.model.path == "models/base"


def test_the_package_data_lists_every_preset_and_pool():
    """``pip install .`` ships what ``[tool.setuptools.package-data]`` names: every preset and pool must match it."""
    import tomllib
    from fnmatch import fnmatch

    root = PRESETS_DIR.parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["stage1"]
    shipped = [p for p in (*PRESETS_DIR.rglob("*"), *POOLS_DIR.rglob("*")) if p.is_file()]
    assert shipped
    for path in shipped:
        relative = str(path.relative_to(root / "stage1"))
        assert any(fnmatch(relative, pattern) for pattern in patterns), f"{relative} would not be installed"
