"""Every command that writes is a careful writer: it refuses an output over its inputs or over a file,
takes the lock of the run it writes into, and a refused command changes nothing. In-process, through
``stage1.cli.main``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from stage1 import cli
from stage1.core.errors import EXIT_INPUT
from stage1.io.layout import LOCK_FILE
from stage1.io.run_lock import RunLock

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "fixtures" / "golden"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _responses(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (GOLDEN / "responses.jsonl").read_text().splitlines()]
    path = folder / "responses.jsonl"
    path.write_text("".join(json.dumps({"item_id": r["item_id"], "variant": r["variant"], "response": r["completion_text"]}) + "\n"
                            for r in rows))
    shutil.copy(GOLDEN / "items.jsonl", folder / "items.jsonl")
    return path


def _score(folder: Path, out: Path) -> int:
    return cli.main(["score", "--in", f"items={folder / 'items.jsonl'}", "--in", f"responses={folder / 'responses.jsonl'}",
                     "--out", str(out), "--set", "eval.bootstrap_samples=20"])


@pytest.mark.parametrize("where", ["the inputs' folder", "a folder above it", "an input file", "below an input file"])
def test_score_refuses_an_out_over_its_inputs_and_changes_nothing(tmp_path, capsys, where):
    """`score --out D` with D the responses' folder used to replace responses.jsonl with its own output;
    --out naming a file, or a path below one, raised FileExistsError / NotADirectoryError."""
    data = tmp_path / "data"
    _responses(data)
    before = _tree(tmp_path)
    out = {"the inputs' folder": data, "a folder above it": tmp_path, "an input file": data / "responses.jsonl",
           "below an input file": data / "responses.jsonl" / "scored"}[where]
    assert _score(data, out) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "--out" in err
    assert _tree(tmp_path) == before


def test_score_into_a_run_another_process_holds_is_refused(tmp_path, capsys):
    """`score --out R/eval` used to take no lock and overwrite the evaluation of a run in use."""
    data = tmp_path / "data"
    _responses(data)
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")
    (run / "eval" / "results.json").write_text('{"kept": true}\n')
    with RunLock(run):
        (run / LOCK_FILE).unlink()  # the lock is the folder's: deleting the note changes nothing
        assert _score(data, run / "eval") == EXIT_INPUT
    assert "in use by another stage1 process" in capsys.readouterr().err
    assert (run / "eval" / "results.json").read_text() == '{"kept": true}\n'
    assert _score(data, run / "eval") == 0  # free: it writes, and leaves no lock note behind
    assert json.loads((run / "eval" / "results.json").read_text())["items"]
    assert not (run / LOCK_FILE).exists()


def test_score_beside_its_inputs_writes(tmp_path):
    data = tmp_path / "data"
    _responses(data)
    assert _score(data, data / "scored") == 0  # a sibling folder cannot replace an input
    assert sorted(p.name for p in (data / "scored").iterdir()) == ["chart.png", "manifest.json", "report.md", "results.json"]


@pytest.mark.parametrize("value", ["²", "٣", "２", "1.0", "-1", "0x2", "1e3"])
@pytest.mark.parametrize("name", ["WORLD_SIZE", "RANK", "LOCAL_RANK", "STAGE1_EVAL_PARENT_PID"])
def test_numeric_environment_variables_are_ascii_decimal_only(capsys, monkeypatch, name, value):
    """`WORLD_SIZE=²` used to end in a traceback: "²".isdigit() is True but int("²") raises."""
    monkeypatch.setenv(name, value)
    assert cli.main(["plan"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"field '{name}'" in err and repr(value) in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["0,²", "a", "0;1", "GPU-", "１"])
def test_cuda_visible_devices_is_refused_by_name(capsys, monkeypatch, value):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert cli.main(["plan"]) == EXIT_INPUT
    assert "field 'CUDA_VISIBLE_DEVICES'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["", "0", "0,1", "-1", "GPU-8f6a1c2e-0b1d-4c3e-9a7f-2d5e6f7a8b9c", " 1 "])
def test_good_device_lists_and_ranks_pass(monkeypatch, value):
    from stage1.core.env_numbers import check_environment

    check_environment({"CUDA_VISIBLE_DEVICES": value, "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": " 0 "})


def test_an_empty_in_path_names_the_input(tmp_path, capsys):
    """`sft-data --in instructions=` used to blame --out (or read the working folder as a dataset)."""
    assert cli.main(["sft-data", "--in", "instructions=", "--in", f"eval_items={GOLDEN / 'items.jsonl'}",
                     "--out", str(tmp_path / "o")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "field '--in instructions': names no file" in err
    assert cli.main(["check-leakage", "--in", "train=", "--in", f"eval_items={GOLDEN / 'items.jsonl'}"]) == EXIT_INPUT
    assert "field '--in train': names no file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_check_leakage_without_its_eval_items_is_bad_input_not_a_finding(tmp_path, capsys):
    train = ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"
    assert cli.main(["check-leakage", "--in", f"train={train}", "--in", f"eval_items={tmp_path / 'none.jsonl'}"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "none.jsonl" in err and "evaluation items not found" in err


def test_evaluate_on_a_missing_run_directory_exits_2_and_creates_nothing(tmp_path, capsys):
    run = tmp_path / "typo"
    assert cli.main(["evaluate", "--run-dir", str(run)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "no such run directory" in err and str(run) in err
    assert not run.exists() and os.listdir(tmp_path) == []
