"""How the CLI takes its inputs: ``--in`` names, the golden file of ``evaluate --against``, and
stderr that holds only stage1's one-line error."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from stage1 import cli
from stage1.core.errors import EXIT_INPUT
from stage1.stages import STAGES_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
INSTRUCTIONS = ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"
EVAL_ITEMS = ROOT / "stage1" / "pools" / "eval" / "items.jsonl"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    [line] = err.splitlines()
    assert line.startswith("error: ") and "Traceback" not in err
    return line


def test_sft_data_without_eval_items_is_refused_so_the_leakage_gate_cannot_be_skipped(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["sft-data", "--in", f"instructions={INSTRUCTIONS}", "--out", str(out)]) == EXIT_INPUT
    line = one_error_line(capsys)
    assert "missing --in for eval_items" in line and "leakage gate" in line
    assert not out.exists()


def test_every_stage_with_a_leakage_gate_requires_eval_items():
    assert "eval_items" in STAGES_BY_NAME["sft_data"].required_inputs and "eval_items" in STAGES_BY_NAME["pairs"].required_inputs


def test_sft_data_with_eval_items_records_the_gate(tmp_path):
    out = tmp_path / "out"
    argv = ["sft-data", "--in", f"instructions={INSTRUCTIONS}", "--in", f"eval_items={EVAL_ITEMS}", "--out", str(out)]
    assert cli.main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["leakage"]["leaks"] == 0 and "eval_items" in manifest["input_hashes"]


def test_an_input_given_twice_is_refused(tmp_path, capsys):
    argv = ["negatives", "--in", f"sft={INSTRUCTIONS}", "--in", f"sft={tmp_path / 'other.jsonl'}", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == EXIT_INPUT
    line = one_error_line(capsys)
    assert "--in sft= is given twice" in line and str(INSTRUCTIONS) in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command, stage", [("negatives", "negatives"), ("sft-data", "sft_data")])
def test_an_unknown_input_name_is_refused_naming_the_names_the_stage_takes(tmp_path, capsys, command, stage):
    argv = [command, "--in", f"sft={INSTRUCTIONS}", "--in", f"instructons={INSTRUCTIONS}", "--out", str(tmp_path / "o")]
    if stage == "sft_data":
        argv[2] = f"instructions={INSTRUCTIONS}"
    assert cli.main(argv) == EXIT_INPUT
    line = one_error_line(capsys)
    assert "reads no input named 'instructons'" in line
    for name in STAGES_BY_NAME[stage].required_inputs + STAGES_BY_NAME[stage].optional_inputs:
        assert name in line
    assert not (tmp_path / "o").exists()


def test_a_folder_that_is_not_a_dataset_is_a_one_line_error(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    argv = ["sft-data", "--in", f"instructions={folder}", "--in", f"eval_items={EVAL_ITEMS}", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == EXIT_INPUT
    assert f"error: {folder}: is a folder but not a saved datasets folder" in one_error_line(capsys)


# ---------------------------------------------------------------- evaluate --against


@pytest.fixture
def evaluation_calls(monkeypatch) -> list[str]:
    """Records an evaluation being started, in a run directory or on files, instead of running it."""
    import stage1.pipeline

    calls: list[str] = []
    monkeypatch.setattr(cli, "cmd_run", lambda args: calls.append("run") or 0)
    monkeypatch.setattr(stage1.pipeline, "run_stage_on_files", lambda *a, **k: calls.append("files") or {})
    return calls


def _golden(tmp_path: Path, content: str | None) -> Path:
    path = tmp_path / "golden.json"
    if content is not None:
        path.write_text(content)
    return path


EMPTY_RATES = json.dumps({"criteria": ["ends_with_end"], "variants": ["sft"], "rates": {"sft": {"ends_with_end": {"n": 0}}}})


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "results file not found (check the --against path, or save one from a good evaluation with `stage1 evaluate --save-golden"),
        ("{not json", "malformed JSON"),
        ('{"rates": {}}', "not an evaluation results file"),
        (EMPTY_RATES, "field 'rates': no variant and criterion with an evaluated item"),
    ],
)
@pytest.mark.parametrize("where", ["run_dir", "files"])
def test_a_bad_golden_file_is_refused_before_anything_is_evaluated(tmp_path, capsys, evaluation_calls, content, expected, where):
    golden = _golden(tmp_path, content)
    argv = ["evaluate", "--against", str(golden)]
    argv += ["--run-dir", str(tmp_path / "run")] if where == "run_dir" else [
        "--in", f"run={tmp_path / 'run'}", "--in", f"eval_items={EVAL_ITEMS}", "--out", str(tmp_path / "eval")]
    assert cli.main(argv) == EXIT_INPUT
    line = one_error_line(capsys)
    assert line.startswith(f"error: {golden}") and expected in line
    assert "stage1 evaluate` first" not in line
    assert evaluation_calls == [], "the evaluation must not start"


# ---------------------------------------------------------------- library notices on stderr


def test_the_bitsandbytes_optional_kernel_notice_is_dropped_and_its_real_warnings_kept():
    """bitsandbytes warns through this logger at import when the optional `kernels` package is
    missing; after main() has run, that notice is dropped and any other warning still passes."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    saved = list(logger.filters)
    for existing in saved:
        logger.removeFilter(existing)
    try:
        notice = logger.makeRecord(logger.name, logging.WARNING, __file__, 1,
                                   "Failed to load CPU gemm_4bit_forward from kernels-community: %s.", ("x",), None)
        assert logger.filter(notice)
        cli.main(["inspect", "--model", "/nonexistent/stage1-model"])
        assert not logger.filter(notice)
        other = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "something else went wrong", (), None)
        assert logger.filter(other)
    finally:
        for existing in list(logger.filters):
            logger.removeFilter(existing)
        for existing in saved:
            logger.addFilter(existing)


@pytest.mark.parametrize("offline", ["1", None], ids=["hub-offline", "hub-default"])
def test_a_user_error_is_one_line_on_stderr_in_a_fresh_process(tmp_path, offline):
    """A command that imports bitsandbytes (the evaluation dry run) and fails on bad input: stderr is
    exactly stage1's error line, whatever the installed libraries would print on this CPU, with the
    Hub offline (as scripts/env.sh and air-gapped users set it: `kernels` then warns about a skipped
    publisher check) and without."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    if offline is not None:
        env["HF_HUB_OFFLINE"] = offline
    result = subprocess.run(
        [sys.executable, "cli.py", "evaluate", "--dry-run", "--run-dir", str(tmp_path / "no-run")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == EXIT_INPUT, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "no variant to evaluate" in line


# ---------------------------------------------------------------- read vs write failures


def test_an_unreadable_input_is_reported_as_cannot_read_not_cannot_write(tmp_path, capsys, monkeypatch):
    """A permission error on a file that exists and may not be read is a read failure; it used to
    say "cannot write ... free space or choose a writable --run-dir"."""
    import errno
    import os

    source = tmp_path / "instructions.jsonl"
    source.write_text("{}\n")

    def refuse(args):
        raise PermissionError(errno.EACCES, "Permission denied", str(source))

    monkeypatch.setattr(cli, "cmd_plan", refuse)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(source) else real_access(path, mode))
    assert cli.main(["plan"]) == EXIT_INPUT
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot read {source}: Permission denied") and "writable" not in line


def test_a_world_size_that_is_not_a_number_is_a_clean_error(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "abc")
    assert cli.main(["plan"]) == EXIT_INPUT
    assert "field 'WORLD_SIZE': must be a whole number of processes >= 1, got 'abc'" in one_error_line(capsys)
