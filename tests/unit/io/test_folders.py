"""Model folders appear whole or not at all; a full disk is one line (exit 2); a killed writer's
temporaries are removed by the stage that owns them on its next start."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from stage1 import cli
from stage1.core.errors import EXIT_INPUT, DiskFullError
from stage1.io.atomic import _temp_beside
from stage1.io.folders import atomic_folder, is_disk_full
from stage1.io.temps import is_temp_name, remove_stale_temps

ROOT = Path(__file__).resolve().parents[3]
SFT = ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"


class SafetensorError(Exception):
    """What safetensors raises on a full disk (an Exception, not an OSError)."""


RUST_ENOSPC = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EDQUOT, "Disk quota exceeded"),
                                   SafetensorError(RUST_ENOSPC)])
def test_a_full_disk_leaves_the_previous_folder_and_no_temporary(tmp_path, error):
    target = tmp_path / "merged"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"old weights")
    with pytest.raises(DiskFullError) as raised:
        with atomic_folder(target, needed_bytes=3 * 2**20) as staged:
            (staged / "model.safetensors").write_bytes(b"half")
            raise error
    message = str(raised.value)
    assert str(target) in message and "needs about 3.0 MiB" in message and "free there" in message
    assert _tree(target) == {"model.safetensors": b"old weights"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_a_folder_is_swapped_in_whole_and_keeps_a_users_own_files(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"old")
    (target / "notes.txt").write_text("mine\n")
    with atomic_folder(target, drop=("*.safetensors",)) as staged:
        assert staged.parent == tmp_path and is_temp_name(staged.name) and not target.joinpath("new.json").exists()
        (staged / "model.safetensors").write_bytes(b"new")
        (staged / "new.json").write_text("{}")
    assert _tree(target) == {"model.safetensors": b"new", "new.json": b"{}", "notes.txt": b"mine\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    assert oct((target / "model.safetensors").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_other_errors_are_not_disk_full_and_still_leave_nothing(tmp_path):
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied")) and not is_disk_full(ValueError("28 rows"))
    with pytest.raises(ValueError):
        with atomic_folder(tmp_path / "out") as staged:
            (staged / "x").write_text("x")
            raise ValueError("a bug")
    assert list(tmp_path.iterdir()) == []


def test_build_tiny_on_a_full_disk_is_one_line_and_no_partial_folder(tmp_path, capsys, monkeypatch):
    """A full disk during a model write gave a SafetensorError traceback and left a half-written folder."""

    class Tokenizer:
        def save_pretrained(self, folder):
            (Path(folder) / "tokenizer.json").write_text("{")
            raise SafetensorError(RUST_ENOSPC)

    monkeypatch.setattr("stage1.hf.tiny.build_qwen2_tokenizer", Tokenizer)
    out = tmp_path / "model"
    assert cli.main(["build-tiny", "--out", str(out)]) == EXIT_INPUT
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # (transformers' progress bar aside)
    assert len(errors) == 1 and "no space left on the device" in errors[0] and str(out) in errors[0] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_a_killed_writer_are_recognised_and_removed(tmp_path):
    fd, name = _temp_beside(tmp_path / "stage" / "negatives.jsonl")  # as a writer killed mid-write leaves it
    os.close(fd)
    legacy = tmp_path / "stage" / ".negatives.jsonl.ab12cd_9.tmp"
    legacy.write_text("x")
    kept = [tmp_path / "stage" / name for name in ("negatives.jsonl", ".hidden", "data.tmp", ".x.tmp")]
    for path in kept:
        path.write_text("keep")
    (tmp_path / "stage" / "sub").mkdir()
    nested = tmp_path / "stage" / "sub" / ".adapter.1a2b3c.stage1-tmp"
    nested.mkdir()
    (nested / "adapter_model.safetensors").write_bytes(b"half")
    removed = remove_stale_temps(tmp_path / "stage")
    assert sorted(removed) == sorted([Path(name), legacy, nested])
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == sorted([*(p.name for p in kept), "sub"])


def test_a_stage_removes_the_temporaries_a_kill_left_in_its_folder(tmp_path):
    """SIGKILL during negatives left a 22 MB temp file that the rerun did not remove."""
    out = tmp_path / "negatives"
    out.mkdir()
    stale = out / ".negatives.jsonl.k1ll3d_x.stage1-tmp"
    stale.write_bytes(b"\0" * 1024)
    assert cli.main(["negatives", "--in", f"sft={SFT}", "--out", str(out)]) == 0
    assert not stale.exists()
    assert not [p for p in out.iterdir() if is_temp_name(p.name)]
    assert json.loads((out / "manifest.json").read_text())["stage"] == "negatives"


def test_a_full_disk_outside_a_model_folder_names_the_file_and_the_space_left(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model" / "config.json"))

    monkeypatch.setattr("stage1.organism.spec.build_tiny_qwen", full)  # the name build-tiny calls
    assert cli.main(["build-tiny", "--out", str(tmp_path / "model")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'model' / 'config.json'}: No space left on device (")
    assert "MiB free there)" in err and err.count("\n") == 1
