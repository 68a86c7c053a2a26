"""``python -m bench``: every benchmark's result becomes rows, a subset can be chosen, a crash is
reported as a row while the others still run, the JSON reads back, and the exit status is 0."""

from __future__ import annotations

import json
import sys
import types

import pytest

import bench.__main__ as bench_main
from bench.table import Row, load_json, row, unmeasured


def test_rows_come_from_a_list_or_from_a_dict_carrying_them():
    rows = [row("x", "speed", 2.0, "x", ">= 5")]
    assert bench_main.as_rows("x", rows) == rows
    assert bench_main.as_rows("x", {"speed": 2.0, "rows": [r.to_dict() for r in rows]}) == rows
    with pytest.raises(TypeError, match="without table rows"):
        bench_main.as_rows("x", {"speed": 2.0})


def test_only_picks_benchmarks_in_the_order_given_and_refuses_unknown_names():
    assert bench_main.parse_only(None) == bench_main.BENCHMARKS
    assert bench_main.parse_only("data, generation") == ("data", "generation")
    with pytest.raises(SystemExit, match="genration"):
        bench_main.parse_only("genration")


def test_a_missed_target_is_reported_not_gated():
    missed = row("generation", "batch 16 / batch 1", 2.9, "x", ">= 5")
    assert missed.ok is False
    assert unmeasured("memplan", "32B", "x", "not measured (no GPU)", "<= 1.0").ok is None


def _fake(name: str, run) -> types.ModuleType:
    module = types.ModuleType(f"bench.{name}")
    module.run = run
    return module


def test_one_crash_becomes_a_row_and_the_rest_still_run(tmp_path, monkeypatch, capsys):
    def crash():
        print("noise from the benchmark")
        raise RuntimeError("out of disk")

    monkeypatch.setitem(sys.modules, "bench.generation", _fake("generation", crash))
    monkeypatch.setitem(sys.modules, "bench.data", _fake("data", lambda: {"rows": [row("data", "total", 12.0, "s", "< 20").to_dict()]}))
    monkeypatch.setattr(bench_main, "RESULTS_DIR", tmp_path / "logs")
    out = tmp_path / "latest.json"
    assert bench_main.main(["--only", "generation,data", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "noise from the benchmark" not in printed, "a benchmark's own output goes to its log"
    assert "noise from the benchmark" in (tmp_path / "logs" / "generation.log").read_text()
    assert "out of disk" in (tmp_path / "logs" / "generation.log").read_text()
    rows = load_json(out)
    failed = [r for r in rows if r.benchmark == "generation" and r.metric == "run"]
    assert len(failed) == 1 and failed[0].value is None and "RuntimeError: out of disk" in failed[0].note
    assert Row("data", "total", 12.0, "s", "< 20", True) in rows
    assert {r.metric for r in rows if r.benchmark == "data"} >= {"benchmark wall time", "benchmark CPU time (self + children)"}
    written = json.loads(out.read_text())
    assert written["command"] == "python -m bench --only generation,data" and len(written["load_average_start"]) == 3
