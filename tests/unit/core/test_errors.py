"""The errors the CLI reports: the exit code of each kind, and the message an input error reads as."""

from __future__ import annotations

import pytest

from stage1.core import errors
from stage1.core.errors import (
    ConfigError,
    GateError,
    InputError,
    LineageError,
    RunLockedError,
    StaleUpstreamError,
    TrainingError,
)


def test_a_failed_gate_exits_1_and_every_other_error_exits_2():
    assert (errors.EXIT_GATE, errors.EXIT_INPUT) == (1, 2)
    assert GateError.exit_code == 1
    for kind in (InputError, ConfigError, LineageError, RunLockedError, StaleUpstreamError, TrainingError):
        assert kind.exit_code == 2, kind.__name__


def test_an_input_error_names_file_line_and_field_then_says_what_to_do():
    error = InputError("expected str, got int", path="data/pool.jsonl", line=7, field="instruction", hint="quote it")
    assert str(error) == error.describe() == "data/pool.jsonl:7: field 'instruction': expected str, got int (quote it)"
    assert (error.path, error.line, error.field, error.message, error.hint) == (
        "data/pool.jsonl", 7, "instruction", "expected str, got int", "quote it",
    )


def test_an_input_error_leaves_out_what_it_was_not_told():
    assert str(InputError("no rows")) == "<input>: no rows"
    assert str(InputError("no rows", path="pool.csv")) == "pool.csv: no rows"
    assert str(InputError("no rows", line=3)) == "<input>:3: no rows"
    assert str(InputError("is empty", field="id")) == "<input>: field 'id': is empty"
    assert str(InputError("is empty", hint="")) == "<input>: is empty"  # an empty hint adds no brackets


def test_line_0_is_still_a_line():
    assert str(InputError("bad header", path="pool.csv", line=0)) == "pool.csv:0: bad header"


def test_a_path_object_is_kept_as_its_text():
    from pathlib import Path

    error = ConfigError("unknown key", path=Path("run") / "config.yaml", field="sft.lr")
    assert error.path == "run/config.yaml" and str(error) == "run/config.yaml: field 'sft.lr': unknown key"


def test_a_stale_upstream_is_a_config_error_caught_as_an_input_error():
    with pytest.raises(InputError, match=r"^<input>: field 'leakage.ngram': must be at least 1$"):
        raise StaleUpstreamError("must be at least 1", field="leakage.ngram")
