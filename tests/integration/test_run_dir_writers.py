"""Who may write a run directory, and that a refused command writes nothing, through ``cli.main``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stage1 import cli
from stage1.io.run_dir import RunLock

ROOT = Path(__file__).resolve().parents[2]
SFT = ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"
ITEMS = ROOT / "stage1" / "pools" / "eval" / "items.jsonl"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sft_data_refuses_to_write_over_its_input_folder(tmp_path, capsys):
    """`sft-data --in instructions=D/train.jsonl --out D` used to replace the 452-row input with
    the train split: the held-out rows were gone."""
    data = tmp_path / "D"
    data.mkdir()
    shutil.copy(SFT, data / "train.jsonl")
    before = _tree(data)
    for out in (data, tmp_path):  # the input's folder, and a folder holding it
        status = cli.main(["sft-data", "--in", f"instructions={data / 'train.jsonl'}", "--in", f"eval_items={ITEMS}", "--out", str(out)])
        err = capsys.readouterr().err
        assert status == 2, err
        assert "would overwrite the input" in err and "train.jsonl" in err
        assert _tree(data) == before


def test_a_folder_input_cannot_hold_the_output(tmp_path, capsys, tiny_model_dir):
    status = cli.main(["pairs", "--in", f"sft={SFT}", "--in", f"negatives={SFT}", "--in", f"model={tiny_model_dir}",
                       "--in", f"eval_items={ITEMS}", "--out", str(tiny_model_dir / "pairs")])
    assert status == 2 and "would overwrite the input" in capsys.readouterr().err
    assert not (tiny_model_dir / "pairs").exists()


@pytest.mark.parametrize("kind", ["root", "file", "under a file"])
def test_out_may_not_be_the_root_or_a_file(tmp_path, capsys, kind):
    afile = tmp_path / "afile"
    afile.write_text("keep\n")
    out = {"root": Path("/"), "file": afile, "under a file": afile / "sub"}[kind]
    status = cli.main(["negatives", "--in", f"sft={SFT}", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert ("root of the file system" if kind == "root" else "is a file, not a folder") in err
    assert afile.read_text() == "keep\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert not Path("/negatives.jsonl").exists() and not Path("/.stage1.lock").exists()


def test_a_stage_on_files_writing_into_a_run_directory_takes_its_lock(tmp_path, capsys):
    """`negatives --in ... --out R/negatives` used to write into R while another process held R."""
    run = tmp_path / "R"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    with RunLock(run):
        status = cli.main(["negatives", "--in", f"sft={SFT}", "--out", str(run / "negatives")])
    err = capsys.readouterr().err
    assert status == 2 and "in use by another stage1 process" in err
    assert not (run / "negatives").exists()
    assert cli.main(["negatives", "--in", f"sft={SFT}", "--out", str(run / "negatives")]) == 0  # free: it writes


def test_rank_alone_does_not_skip_the_lock(tmp_path, capsys, monkeypatch):
    """With `RANK=1` in the environment (no multi-process launch), `run` used to take no lock."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    run = tmp_path / "run"
    with RunLock(run):
        status = cli.main(["negatives", "--run-dir", str(run)])
    assert status == 2 and "in use by another stage1 process" in capsys.readouterr().err
    assert not (run / "negatives").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--force", "merged"], "unknown stage 'merged'"),
        (["--set", "run.log_file=sft/adapter/adapter_model.safetensors"], "run.log_file"),
        (["--set", "run.log_file=config.yaml"], "run.log_file"),
        (["--set", "run.log_file=../elsewhere.log"], "escapes the run directory"),
    ],
)
def test_a_refused_run_creates_nothing(tmp_path, capsys, args, words):
    """A refused command used to create the run directory, `.stage1.lock` and `run.log` first."""
    run = tmp_path / "new-run"
    status = cli.main(["run", "--run-dir", str(run), *args])
    err = capsys.readouterr().err
    assert status == 2, err
    assert words in err
    assert not run.exists() and not list(tmp_path.iterdir())


def test_run_dir_may_not_be_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep\n")
    for run in (afile, afile / "run"):
        assert cli.main(["run", "--run-dir", str(run)]) == 2
        assert "is a file, not a folder" in capsys.readouterr().err
    assert afile.read_text() == "keep\n" and [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_log_file_inside_a_stage_folder_is_refused_by_name():
    from stage1.core.errors import ConfigError
    from stage1.io.run_dir import check_log_file

    for bad in ("sft_data/run.log", "merged/model.safetensors", "eval/x.log", "timings.json", ".stage1.lock"):
        with pytest.raises(ConfigError, match="run.log_file"):
            check_log_file(Path("/tmp/some-run"), bad)
    assert check_log_file(Path("/tmp/some-run"), "logs/run.log").name == "run.log"


def test_evaluate_with_no_variant_named_leaves_the_run_config_alone(tmp_path, capsys):
    """`evaluate --variants ,` used to rewrite the run's config.yaml (with an empty variant list)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("# the run's own config\n")
    status = cli.main(["evaluate", "--run-dir", str(run), "--variants", ","])
    assert status == 2 and "names no variant" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == "# the run's own config\n"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
