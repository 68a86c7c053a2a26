"""A forced rerun that writes the same bytes stops the cascade there, in a copied run too: nothing a
later stage hashes holds a wall-clock time or the run's path."""

from __future__ import annotations

import json
import shutil

import pytest

from stage1 import cli
from stage1.io.layout import STAGE_DIRS, STAGE_FILE

pytestmark = pytest.mark.slow


def test_a_forced_real_merge_in_a_copied_run_reruns_merge_only(tiny_run, tmp_path, monkeypatch):
    """`run --force merge` giving byte-identical weights used to retrain DPO and re-evaluate: the
    merged lineage recorded the merge's seconds and the run's path, fidelity.json the run's path."""
    original, _ = tiny_run
    run = tmp_path / "elsewhere" / "copied-run"
    shutil.copytree(original, run)
    monkeypatch.setenv("COLUMNS", "400")
    present = {stage: folder for stage, folder in STAGE_DIRS.items() if (run / folder / STAGE_FILE).exists()}
    before = {stage: (run / folder / STAGE_FILE).stat().st_mtime_ns for stage, folder in present.items()}
    merged_before = {p.name: p.read_bytes() for p in (run / "merged").iterdir() if p.name not in (STAGE_FILE, "manifest.json")}
    assert cli.main(["run", "--run-dir", str(run), "--config", "tiny-random", "--force", "merge"]) == 0
    after = {stage: (run / folder / STAGE_FILE).stat().st_mtime_ns for stage, folder in present.items()}
    assert {stage for stage in present if after[stage] != before[stage]} == {"merge"}
    merged_after = {p.name: p.read_bytes() for p in (run / "merged").iterdir() if p.name not in (STAGE_FILE, "manifest.json")}
    assert merged_after == merged_before
    lineage = (run / "merged" / "lineage.json").read_text()
    assert str(tmp_path) not in lineage and str(original) not in lineage and "seconds" not in json.loads(lineage)["extra"]
    assert not [p for p in run.rglob("*") if p.name.endswith(".stage1-tmp")], "no temporary left"
