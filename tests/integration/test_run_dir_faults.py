"""A finished tiny run, changed behind the pipeline's back: the next `run` reruns exactly the stages
that must rerun, and says which file made them.

Every test copies the session's tiny run into its tmp_path and changes the copy. The cheap stages
(model, sft_data, negatives, pairs) run for real; the training and evaluation entry points are
replaced by stand-ins that restore the finished run's files (a deterministic retrain), so a test
sees the pipeline's decisions without training again. A stand-in told to come out different writes
other bytes, as a retrain on another machine would.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stage1 import cli
from stage1.io.layout import STAGE_DIRS, STAGE_FILE

pytestmark = pytest.mark.slow
POOL = Path(__file__).resolve().parents[2] / "stage1" / "pools" / "sft" / "instructions.jsonl"

STAND_INS = ("stage1.train.sft.run_train_sft", "stage1.train.merge.run_merge", "stage1.train.dpo.run_train_dpo",
             "stage1.eval.stage.run_evaluate")


@dataclass
class RunCopy:
    original: Path
    run: Path
    calls: list[str] = field(default_factory=list)
    different: set[str] = field(default_factory=set)  # stage folders whose stand-in writes other bytes

    def stamps(self) -> dict[str, int]:
        # The stages this run has: a disabled one (samples, under negatives.source: rules) has no folder.
        return {stage: (self.run / folder / STAGE_FILE).stat().st_mtime_ns for stage, folder in STAGE_DIRS.items()
                if (self.original / folder / STAGE_FILE).exists()}

    def run_cli(self, *extra: str) -> set[str]:
        """`cli.main(["run", ...])` on the copy; the stages whose stage.json it rewrote."""
        before = self.stamps()
        self.calls.clear()
        assert cli.main(["run", "--run-dir", str(self.run), "--config", "tiny-random", *extra]) == 0
        after = self.stamps()
        return {stage for stage in before if after[stage] != before[stage]}


@pytest.fixture
def copy(tiny_run, tmp_path, monkeypatch) -> RunCopy:
    original, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    copied = RunCopy(original, run)

    def stand_in(*args, out_dir, **kwargs):
        out_dir = Path(out_dir)
        copied.calls.append(out_dir.name)
        source = original / out_dir.relative_to(run)
        for file in source.rglob("*"):
            if file.is_file() and file.name != STAGE_FILE:
                (out_dir / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out_dir / file.relative_to(source))
        if out_dir.name in copied.different:
            weights = next(p for p in sorted(out_dir.rglob("*.safetensors")) if "checkpoints" not in p.parts)
            weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x7f")  # last float: +inf
        return {}

    for target in STAND_INS:
        monkeypatch.setattr(target, stand_in)
    monkeypatch.setenv("COLUMNS", "400")  # one summary line per stage, paths unbroken
    return copied


def test_a_copied_run_is_up_to_date_and_verify_finds_nothing(copy):
    assert copy.run_cli() == set()
    assert copy.run_cli("--verify") == set()
    assert copy.calls == []


def test_an_edited_row_of_the_sft_examples_reruns_sft_data(copy, capsys):
    train = copy.run / "sft_data" / "train.jsonl"
    original = train.read_bytes()
    lines = original.decode().splitlines(keepends=True)
    row = json.loads(lines[3])
    row["response"] = row["response"] + " (edited)"
    lines[3] = json.dumps(row) + "\n"
    train.write_text("".join(lines))
    assert copy.run_cli() == {"sft_data"}
    assert train.read_bytes() == original  # rebuilt as it was: nothing downstream read other bytes
    assert f"sft_data: runs because output {train} changed" in capsys.readouterr().out


def test_sft_examples_cut_mid_line_rerun_sft_data(copy):
    train = copy.run / "sft_data" / "train.jsonl"
    original = train.read_bytes()
    train.write_bytes(original[: len(original) // 2 + 7])
    assert copy.run_cli() == {"sft_data"}
    assert train.read_bytes() == original


def test_deleted_sft_adapter_weights_rerun_sft_and_only_what_reads_other_bytes(copy, capsys):
    weights = copy.run / "sft" / "adapter" / "adapter_model.safetensors"
    weights.unlink()
    assert copy.run_cli() == {"sft"} and copy.calls == ["sft"]
    assert f"{weights} is missing" in capsys.readouterr().out
    weights.unlink()
    copy.different = {"sft"}  # retrained to other weights: merge read them, so it reruns too
    assert copy.run_cli() == {"sft", "merge"} and copy.calls == ["sft", "merged"]
    assert f"merge: runs because input {weights} changed" in capsys.readouterr().out


def test_nan_bytes_in_the_merged_weights_rerun_merge_and_evaluate_alone_refuses_them(copy, capsys):
    """400 kB of NaN written into merged/model.safetensors used to leave every stage up to date,
    and a forced evaluation scored the NaN model."""
    weights = copy.run / "merged" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400_000] = b"\xff" * 400_000
    weights.write_bytes(bytes(data))
    eval_before = (copy.run / "eval" / "results.json").read_bytes()
    assert cli.main(["evaluate", "--run-dir", str(copy.run), "--config", "tiny-random", "--force", "eval"]) == 2
    err = capsys.readouterr().err
    assert "stage merge, which eval reads, is not up to date" in err and str(weights) in err
    assert copy.calls == [] and (copy.run / "eval" / "results.json").read_bytes() == eval_before
    assert copy.run_cli() == {"merge"} and copy.calls == ["merged"]
    assert weights.read_bytes() == (copy.original / "merged" / "model.safetensors").read_bytes()


def test_damage_that_keeps_size_and_time_is_found_by_verify(copy):
    import os

    negatives = copy.run / "negatives" / "negatives.jsonl"
    stat = negatives.stat()
    data = bytearray(negatives.read_bytes())
    data[10] = ord("#") if data[10] != ord("#") else ord("%")
    negatives.write_bytes(bytes(data))
    os.utime(negatives, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert copy.run_cli() == set()
    assert copy.run_cli("--verify") == {"negatives"}


def test_forced_negatives_rerun_pairs_when_what_pairs_read_changed(copy, monkeypatch):
    """`--force negatives` used to leave pairs up to date even when the negatives it read had changed."""
    assert copy.run_cli("--force", "negatives") == {"negatives"}  # the same bytes again: pairs still matches

    import stage1.negatives.stage

    real = stage1.negatives.stage.run_negatives

    def fewer_negatives(*args, out_dir, **kwargs):
        result = real(*args, out_dir=out_dir, **kwargs)
        path = Path(out_dir) / "negatives.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-5]))
        return result

    monkeypatch.setattr(stage1.negatives.stage, "run_negatives", fewer_negatives)
    pairs_train = (copy.run / "pairs" / "train.jsonl").read_bytes()
    ran = copy.run_cli("--force", "negatives")
    expected = {"negatives", "pairs", "dpo", "dpo_only"}  # DPO reads both pair files
    if (copy.run / "pairs" / "train.jsonl").read_bytes() != pairs_train:
        expected.add("eval")  # the leakage gate reads pairs/train.jsonl
    assert ran == expected


def test_a_run_recorded_without_file_hashes_is_adopted(copy):
    """stage.json written before file hashes (format 1): each stage whose old fingerprint still
    matches is kept and hashed, none reruns; afterwards every record holds file hashes."""
    from stage1.config.typed import settings_to_dict
    from stage1.io.run_dir import legacy_fingerprint, read_stage_record
    from stage1.pipeline import build_steps
    from stage1.stages.config import load_config

    legacy: dict[str, str] = {}
    for step in build_steps(load_config("tiny-random"), copy.run):
        upstream = {name: legacy[name] for name in step.upstream}
        legacy[step.name] = legacy_fingerprint(step.name, settings_to_dict(step.settings), upstream, step.external)
        record = {"stage": step.name, "fingerprint": legacy[step.name], "outputs": list(step.outputs)}
        (step.out_dir / STAGE_FILE).write_text(json.dumps(record))
    present = {stage for stage, folder in STAGE_DIRS.items() if (copy.original / folder / STAGE_FILE).exists()}
    assert copy.run_cli() == present  # every record of the run's stages rewritten ...
    assert copy.calls == []  # ... and nothing retrained
    assert all(read_stage_record(copy.run / STAGE_DIRS[stage]).has_file_hashes for stage in present)
    assert copy.run_cli() == set()


def test_an_input_of_yours_moved_is_up_to_date_and_edited_reruns_every_stage_that_reads_it(copy, tmp_path, capsys):
    """The fingerprint holds the content of what a stage read, not its path: a copy of the pool
    elsewhere reruns nothing; an edited pool reruns sft_data and every stage whose input then
    changes (merge included: its hand-off check scores the SFT training rows)."""
    mine = tmp_path / "my-instructions.jsonl"
    shutil.copy(POOL, mine)
    assert copy.run_cli("--set", f"data.instructions={mine}") == set()
    rows = [json.loads(line) for line in mine.read_text().splitlines()]
    mine.write_text("".join(json.dumps({**row, "response": row["response"] + " Indeed."}) + "\n" for row in rows))
    capsys.readouterr()
    ran = copy.run_cli("--set", f"data.instructions={mine}")
    # merge reruns too: its hand-off check scores the SFT training rows, which changed.
    assert ran == {"sft_data", "sft", "merge", "negatives", "pairs", "dpo", "dpo_only", "eval"}
    out = capsys.readouterr().out
    assert f"sft_data: runs because input {mine} changed" in out
    assert f"sft: runs because input {copy.run / 'sft_data' / 'train.jsonl'} changed" in out


def test_a_stage_on_files_that_wrote_into_the_run_is_rebuilt_by_the_next_run(copy):
    """`negatives --in sft=OTHER --out R/negatives` used to leave `run` saying negatives: up to date."""
    negatives = copy.run / "negatives" / "negatives.jsonl"
    original = negatives.read_bytes()
    assert cli.main(["negatives", "--in", f"sft={POOL}", "--out", str(copy.run / "negatives")]) == 0
    assert negatives.read_bytes() != original
    assert copy.run_cli() == {"negatives"}
    assert negatives.read_bytes() == original
