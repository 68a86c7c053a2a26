"""What makes a stage stale: ``run_pipeline`` on three small stages that read each other's files.

Each fake stage reads real files and writes real files, so the decisions are the pipeline's own:
settings, the content of every file a stage read, and every file it wrote, against its stage.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from stage1 import pipeline
from stage1.io.layout import STAGE_FILE
from stage1.io.run_dir import legacy_fingerprint, read_stage_record
from stage1.stages.config import load_config


class ThreeStages:
    """sft_data (reads the user's source file) -> negatives (reads sft_data's file) -> pairs (reads both)."""

    def __init__(self, root: Path):
        self.run = root / "run"
        self.source = root / "instructions.txt"
        self.source.write_text("alpha\nbeta\ngamma\n")
        self.calls: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        self.negatives_suffix = ""  # a changed negatives code writes other bytes

    @property
    def train(self) -> Path:
        return self.run / "sft_data" / "train.jsonl"

    @property
    def negatives(self) -> Path:
        return self.run / "negatives" / "negatives.jsonl"

    @property
    def pairs(self) -> Path:
        return self.run / "pairs" / "train.jsonl"

    def steps(self, *args) -> list[pipeline.Step]:
        def sft_data(run):
            self.calls.append("sft_data")
            rows = [json.dumps({"instruction": line}) + "\n" for line in self.source.read_text().splitlines()]
            self._write(self.train, "".join(rows))

        def negatives(run):
            self.calls.append("negatives")
            rows = self.train.read_text().splitlines()
            self._write(self.negatives, "".join(f"{row[::-1]}{self.negatives_suffix}\n" for row in rows))

        def pairs(run):
            self.calls.append("pairs")
            self._write(self.pairs, self.train.read_text() + self.negatives.read_text())

        return [
            pipeline.Step("sft_data", self.run / "sft_data", ("train.jsonl",), {"k": 1}, (), {"instructions": self.source},
                          sft_data, {"instructions": self.source}),
            pipeline.Step("negatives", self.run / "negatives", ("negatives.jsonl",), {"k": 2}, ("sft_data",), {}, negatives,
                          {"sft": self.train}),
            pipeline.Step("pairs", self.run / "pairs", ("train.jsonl",), {"k": 3}, ("sft_data", "negatives"), {}, pairs,
                          {"sft": self.train, "negatives": self.negatives}),
        ]

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def run_once(self, **kwargs) -> list[str]:
        self.calls.clear()
        self.events.clear()
        pipeline.run_pipeline(load_config(None), self.run, on_stage=lambda *event: self.events.append(event), **kwargs)
        return list(self.calls)

    def reason(self, stage: str) -> str:
        return next(reason for name, event, reason in self.events if name == stage and event == "start")


@pytest.fixture
def stages(tmp_path, monkeypatch) -> ThreeStages:
    three = ThreeStages(tmp_path)
    monkeypatch.setattr(pipeline, "build_steps", three.steps)
    assert three.run_once() == ["sft_data", "negatives", "pairs"]
    assert three.run_once() == []
    return three


def test_an_edited_row_of_an_intermediate_reruns_the_stage_that_wrote_it(stages):
    """The stage that wrote it rebuilds it; a stage that read it reruns only if the bytes it read
    now differ (here the rebuild restores them, so negatives and pairs stay up to date)."""
    original = stages.train.read_bytes()
    stages.train.write_text(original.decode().replace("beta", "BETA"))
    assert stages.run_once() == ["sft_data"]
    assert stages.train.read_bytes() == original
    assert "output" in stages.reason("sft_data") and str(stages.train) in stages.reason("sft_data")


def test_a_file_cut_mid_line_is_rebuilt(stages):
    original = stages.train.read_bytes()
    stages.train.write_bytes(original[: len(original) // 2])
    assert stages.run_once() == ["sft_data"]
    assert stages.train.read_bytes() == original
    assert "bytes" in stages.reason("sft_data")  # the size change is shown


def test_a_deleted_output_reruns_its_stage(stages):
    stages.negatives.unlink()
    assert stages.run_once() == ["negatives"]
    assert f"{stages.negatives} is missing" in stages.reason("negatives")


def test_damage_that_keeps_size_and_time_is_found_by_verify(stages):
    """The cheap check trusts size and modification time; --verify hashes every file again."""
    stat = stages.negatives.stat()
    damaged = bytearray(stages.negatives.read_bytes())
    damaged[2] ^= 0xFF
    stages.negatives.write_bytes(bytes(damaged))
    os.utime(stages.negatives, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert stages.run_once() == []
    assert stages.run_once(verify=True) == ["negatives"]
    assert "changed" in stages.reason("negatives")


def test_damage_with_a_new_time_is_found_by_the_cheap_check(stages):
    damaged = bytearray(stages.pairs.read_bytes())
    damaged[0] ^= 0xFF
    stages.pairs.write_bytes(bytes(damaged))
    assert stages.run_once() == ["pairs"]


def test_a_changed_user_input_reruns_every_stage_downstream_and_says_which_file(stages):
    stages.source.write_text("alpha\nbeta\ndelta\n")
    assert stages.run_once() == ["sft_data", "negatives", "pairs"]
    assert f"input {stages.source} changed" in stages.reason("sft_data")
    assert f"input {stages.train} changed" in stages.reason("negatives")
    assert stages.run_once() == []


def test_a_touched_input_with_the_same_content_reruns_nothing(stages):
    os.utime(stages.source, ns=(1, 10**18))
    assert stages.run_once() == []


def test_forcing_a_stage_reruns_what_read_its_files_when_they_changed(stages):
    """`--force negatives` used to leave pairs up to date even when the negatives it read had changed."""
    assert stages.run_once(force=("negatives",)) == ["negatives"]  # same bytes: pairs still matches
    stages.negatives_suffix = " (new negatives code)"
    assert stages.run_once(force=("negatives",)) == ["negatives", "pairs"]
    assert f"input {stages.negatives} changed" in stages.reason("pairs")


def test_new_settings_rerun_the_stage(stages, monkeypatch):
    steps = stages.steps()
    steps[1] = dataclasses.replace(steps[1], settings={"k": 99})
    monkeypatch.setattr(pipeline, "build_steps", lambda *args: steps)
    assert stages.run_once() == ["negatives"]
    assert stages.reason("negatives") == "its settings changed"


def test_a_record_without_file_hashes_is_adopted_when_its_fingerprint_still_matches(stages):
    """A run directory made before stage.json recorded file hashes: a stage whose format-1
    fingerprint (settings, upstream fingerprints, external inputs) still matches is kept and its
    files hashed now; one whose fingerprint does not match reruns."""
    steps = stages.steps()
    legacy = {}
    for step in steps:
        upstream = {name: legacy[name] for name in step.upstream}
        legacy[step.name] = legacy_fingerprint(step.name, step.settings, upstream, step.external)
        (step.out_dir / STAGE_FILE).write_text(json.dumps({"stage": step.name, "fingerprint": legacy[step.name], "outputs": list(step.outputs)}))
    (stages.run / "pairs" / STAGE_FILE).write_text(json.dumps({"stage": "pairs", "fingerprint": "0" * 64, "outputs": ["train.jsonl"]}))
    assert stages.run_once() == ["pairs"]
    assert [name for name, event, _ in stages.events if event == "adopted"] == ["sft_data", "negatives"]
    assert "older stage1" in stages.reason("pairs")
    for step in steps:
        assert read_stage_record(step.out_dir).has_file_hashes
    assert stages.run_once() == []


def test_a_stage_run_alone_refuses_an_upstream_stage_whose_files_changed(stages):
    """`evaluate` after `merged/model.safetensors` was damaged used to score the damaged model; a
    stage run alone now refuses to read a recorded upstream stage's changed files."""
    from stage1.core.errors import StaleUpstreamError

    stages.train.write_text("damaged\n")
    with pytest.raises(StaleUpstreamError, match="stage sft_data, which pairs reads, is not up to date: output .*train.jsonl changed"):
        stages.run_once(only=("pairs",))
    assert stages.calls == []
    assert stages.run_once(only=("sft_data",)) == ["sft_data"]
    assert stages.run_once(only=("pairs",)) == []
