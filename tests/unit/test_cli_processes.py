"""Under ``accelerate launch`` every process runs the command; only training commands may."""

from __future__ import annotations

import pytest

from stage1 import cli
from stage1.core.errors import ConfigError


@pytest.mark.parametrize("command", ["run", "sft-data", "merge", "negatives", "pairs", "evaluate", "plan", "build-tiny", "inspect"])
def test_non_training_commands_refuse_several_processes(command):
    with pytest.raises(ConfigError, match=f"`{command}` was launched as 4 processes"):
        cli.check_process_count(command, {"WORLD_SIZE": "4"})


@pytest.mark.parametrize("command", ["train-sft", "train-dpo"])
def test_training_commands_accept_several_processes(command):
    cli.check_process_count(command, {"WORLD_SIZE": "4"})


@pytest.mark.parametrize("environ", [{}, {"WORLD_SIZE": "1"}, {"WORLD_SIZE": ""}])
def test_one_process_runs_every_command(environ):
    cli.check_process_count("run", environ)


def test_run_under_several_processes_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    run_dir = tmp_path / "run"
    assert cli.main(["run", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "only train-sft and train-dpo run under accelerate launch" in err and "WORLD_SIZE" in err
    assert not run_dir.exists()
