"""The command line's help: every flag explained, every shipped preset named."""

from __future__ import annotations

import argparse

import pytest

from stage1.cli import build_parser
from stage1.cli_parser import preset_names
from stage1.config.presets import PRESETS_DIR


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_the_presets_named_in_help_are_the_files_in_the_presets_folder():
    files = sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))
    assert preset_names() == files and {"tiny", "tiny-qlora", "qwen2.5-32b"} <= set(files)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_flag_of_every_command_has_help_text(name):
    command = _subcommands()[name]
    undocumented = [action.option_strings for action in command._actions
                    if action.option_strings and not (action.help and action.help.strip())]
    assert not undocumented, f"`{name}` flags without help: {undocumented}"


@pytest.mark.parametrize("name", [name for name, command in sorted(_subcommands().items())
                                  if any("--config" in action.option_strings for action in command._actions)])
def test_config_help_lists_every_shipped_preset(name):
    # argparse may wrap a name at its hyphen ("tiny-" / "random"): compare without white space
    text = "".join(_subcommands()[name].format_help().split())
    for preset in preset_names():
        assert preset in text, f"`{name} --help` does not name the preset {preset}"


def test_an_input_names_a_shipped_pool_by_name_unless_a_file_of_that_name_exists(tmp_path, monkeypatch):
    from stage1.config.presets import POOLS_DIR, input_path

    monkeypatch.chdir(tmp_path)
    assert input_path("items_large") == POOLS_DIR / "eval" / "items_large.jsonl"
    assert input_path("instructions") == POOLS_DIR / "sft" / "instructions.jsonl"
    assert input_path("no_such_pool") == tmp_path.joinpath("no_such_pool").relative_to(tmp_path)
    (tmp_path / "items").write_text("mine\n")
    assert input_path("items") == tmp_path.joinpath("items").relative_to(tmp_path), "what the user has wins"


def test_check_leakage_runs_on_shipped_pools_named_by_name(tmp_path, monkeypatch, capsys):
    from stage1.cli import main

    monkeypatch.chdir(tmp_path)  # no checkout paths from here
    assert main(["check-leakage", "--in", "train=instructions", "--in", "eval_items=items"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "no leak" in shown and "pools/sft/instructions.jsonl (" in shown and "pools/eval/items.jsonl" in shown
