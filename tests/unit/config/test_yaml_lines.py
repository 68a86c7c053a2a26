"""The YAML reader's line index never expands aliases: bombs and cycles are refused at once, plain
anchors and merge keys still work, and keys must be strings."""

from __future__ import annotations

import time

import pytest

from stage1.config.yaml_lines import MAX_EXPANDED_NODES, read_yaml
from stage1.core.errors import ConfigError
from stage1.stages.config import load_config

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi")
)


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_an_alias_bomb_is_refused_in_well_under_a_second(tmp_path):
    """Nine levels of nine aliases (9^9 values) hung the line index; now it is counted, not walked."""
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        read_yaml(_write(tmp_path, BOMB))
    assert time.perf_counter() - started < 1.0
    assert "aliases expand this value" in error.value.message and f"{MAX_EXPANDED_NODES:,}" in error.value.message
    assert error.value.line == 5  # e, the first value past the limit (9^5 values)


@pytest.mark.parametrize("text", ["run: &r\n  again: *r\n", "sft: &s [1, *s]\n"])
def test_a_recursive_alias_is_refused(tmp_path, text):
    with pytest.raises(ConfigError, match="a recursive alias") as error:
        read_yaml(_write(tmp_path, text))
    assert error.value.line == 1


def test_anchors_and_merge_keys_within_the_bound_still_work(tmp_path):
    text = "defaults: &d\n  learning_rate: 1.0e-4\n  max_steps: 3\nsft:\n  <<: *d\n  max_steps: 5\n"
    data, lines = read_yaml(_write(tmp_path, text))
    assert data["sft"] == {"learning_rate": 1.0e-4, "max_steps": 5}
    assert lines["sft.max_steps"] == 6 and lines["defaults.learning_rate"] == 2


@pytest.mark.parametrize(
    ("text", "shown", "kind"),
    [("sft:\n  1: 2\n", "'1'", "int"), ("dpo:\n  true: 2\n", "'true'", "bool"), ("eval:\n  null: 1\n", "'null'", "null"),
     ("lora:\n  ? [r]\n  : 8\n", "'a sequence'", "seq")],
)
def test_a_key_that_is_not_a_string_is_refused_with_its_line(tmp_path, text, shown, kind):
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, text))
    assert f"the key {shown}" in error.value.message and f"YAML reads it as {kind}" in error.value.message
    assert error.value.line == 2
