"""``cli.py inspect``: the token table for one example, and one-line errors with exit 2 for bad input."""

from __future__ import annotations

import pytest

from stage1 import cli
from stage1.core.errors import EXIT_INPUT


def inspect(model_dir, *extra: str) -> int:
    return cli.main(["inspect", "--model", str(model_dir), "--instruction", "What?", "--response", "Paris.", *extra])


def test_inspect_shows_the_supervised_tokens(tiny_model_dir, capsys):
    assert inspect(tiny_model_dir) == 0
    out = capsys.readouterr().out
    assert "supervised (response, END and eos)" in out
    assert "'END'" in out


@pytest.mark.parametrize(
    "max_length, expected",
    [("5", "the prompt is 6 tokens, which leaves no room for a response within max_length=5"),
     ("8", "exceeds max_length=8; truncating would drop END"),
     ("1", "must be at least 2")],
)
def test_a_max_length_too_small_is_a_one_line_error_with_exit_2(tiny_model_dir, capsys, max_length, expected):
    assert inspect(tiny_model_dir, "--max-length", max_length) == EXIT_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: ") and "--max-length" in line and expected in line
    assert "Traceback" not in captured.err


def test_a_format_error_is_a_one_line_error_with_exit_2(tiny_model_dir, capsys):
    assert cli.main(["inspect", "--model", str(tiny_model_dir), "--instruction", "What?", "--response", "a\nEND\nb"]) == EXIT_INPUT
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: response: line 2 is exactly 'END'")


def test_debug_shows_the_traceback(tiny_model_dir):
    from stage1.core.errors import InputError

    with pytest.raises(InputError):
        inspect(tiny_model_dir, "--max-length", "5", "--debug")


def test_a_missing_model_folder_is_refused_and_nothing_is_built(tmp_path, capsys):
    missing = tmp_path / "no-model"
    assert inspect(missing) == EXIT_INPUT
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {missing}: field '--model': model folder not found")
    assert f"stage1 build-tiny --out {missing}" in line
    assert not missing.exists(), "inspect reads a model; it never builds one"


def test_a_folder_without_a_tokenizer_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert inspect(tmp_path) == EXIT_INPUT
    [line] = capsys.readouterr().err.splitlines()
    assert "not a model folder: no tokenizer.json" in line
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_the_default_model_is_the_tiny_runs_and_is_not_built_either(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["inspect"]) == EXIT_INPUT
    [line] = capsys.readouterr().err.splitlines()
    assert "runs/tiny/model" in line and "stage1 run" in line
    assert list(tmp_path.iterdir()) == []
