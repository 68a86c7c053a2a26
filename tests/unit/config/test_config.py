"""YAML presets, dotted overrides, passthrough sections checked against TRL/PEFT's own fields."""

from __future__ import annotations

import pytest

from stage1.config.load import dump_config, load_config
from stage1.config.overrides import parse_override
from stage1.config.presets import PRESETS_DIR
from stage1.core.errors import ConfigError


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_presets_load_and_round_trip(tmp_path):
    for preset in ("tiny", "qwen2.5-32b"):
        config = load_config(preset)
        again = load_config(_write(tmp_path, dump_config(config)))
        assert again.to_dict() == config.to_dict()


def test_default_preset_is_tiny():
    assert load_config(None).to_dict() == load_config(PRESETS_DIR / "tiny.yaml").to_dict()


def test_override_reaches_trl_section():
    config = load_config("tiny", ["dpo.beta=0.2", "sft.learning_rate=1e-3", "run.seed=7"])
    assert config.dpo["beta"] == 0.2
    assert config.sft["learning_rate"] == 1e-3
    assert config.run.seed == 7


def test_unknown_trl_key_names_line_and_nearest(tmp_path):
    path = _write(tmp_path, "sft:\n  learning_rate: 0.001\n  max_seq_length: 512\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.field, error.line) == ("sft.max_seq_length", 3)
    assert "did you mean 'max_length'" in str(error)


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'negatives'"):
        load_config(_write(tmp_path, "negativs:\n  per_instruction: 2\n"))


def test_unknown_key_in_our_section(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, "run:\n  sed: 3\n"))
    assert caught.value.field == "run.sed" and caught.value.line == 2
    assert "did you mean 'seed'" in str(caught.value)


def test_wrong_type_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(_write(tmp_path, "dpo:\n  beta: high\n"))
    with pytest.raises(ConfigError, match="expected int"):
        load_config(_write(tmp_path, "run:\n  seed: three\n"))


def test_pipeline_owned_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="set by the pipeline"):
        load_config(_write(tmp_path, "sft:\n  output_dir: /tmp/x\n"))


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, "run:\n  seed: 1\n   bad: [\n"))
    assert caught.value.line is not None and "invalid YAML" in str(caught.value)


def test_overrides_are_parsed_not_evaluated():
    assert parse_override("a.b=__import__('os')") == (["a", "b"], "__import__('os')")
    assert parse_override("x=[1, 2]") == (["x"], [1, 2])
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")


def test_missing_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("no-such-preset")


def test_keys_the_training_stage_owns_are_refused_at_load(tmp_path):
    """`sft.seed` would be overwritten by run.seed at training time: refused when the config is read."""
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, "sft:\n  seed: 3\n"))
    assert caught.value.field == "sft.seed" and caught.value.line == 2
    assert "run.seed" in str(caught.value)
    with pytest.raises(ConfigError, match="lora.task_type"):
        load_config(_write(tmp_path, "lora:\n  task_type: SEQ_CLS\n"))
