"""YAML presets, dotted overrides, passthrough sections checked against TRL/PEFT's own fields."""

from __future__ import annotations

import pytest

from stage1.config.overrides import parse_override
from stage1.config.presets import PRESETS_DIR
from stage1.core.errors import ConfigError
from stage1.stages.config import dump_config, load_config


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


def test_a_section_given_as_a_mapping_merges_into_the_preset_section():
    """``--set dpo={beta: 0.2}`` used to replace the whole section: max_steps, learning_rate and
    max_length fell back to TRL's defaults."""
    preset = load_config("tiny")
    config = load_config("tiny", ["dpo={beta: 0.2, max_steps: 4}"])
    assert config.dpo == {**preset.dpo, "beta": 0.2, "max_steps": 4}
    assert config.pairs.max_length == preset.pairs.max_length


def test_a_section_set_to_a_scalar_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match="dpo is a section") as error:
        load_config("tiny", ["dpo=3"])
    assert "--set dpo.KEY=VALUE" in error.value.hint


def test_an_error_in_a_merged_section_names_the_set_that_gave_the_key():
    with pytest.raises(ConfigError) as error:
        load_config("tiny", ["dpo={beta: .inf}"])
    assert error.value.path == "--set dpo={beta: .inf}" and error.value.field == "dpo.beta"


def test_dpo_max_length_too_small_is_blamed_on_its_set_not_on_the_preset():
    """pairs.max_length follows dpo.max_length; the error used to name tiny.yaml and pairs.max_length."""
    with pytest.raises(ConfigError) as error:
        load_config("tiny", ["dpo.max_length=1"])
    assert error.value.path == "--set dpo.max_length=1" and error.value.field == "dpo.max_length"
    assert "pairs.max_length follows dpo.max_length" in error.value.message


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


def test_the_pipeline_config_has_one_field_per_section_of_the_schema():
    """The schema is assembled from the stages' declarations; the typed config must hold each section."""
    import dataclasses

    from stage1.stages.config import SCHEMA, PipelineConfig

    assert [f.name for f in dataclasses.fields(PipelineConfig) if f.name != "source"] == list(SCHEMA.names)


def test_the_config_layer_imports_no_stage():
    """``stage1.config`` knows how to load typed sections, not which ones: no stage module is imported by it."""
    import subprocess
    import sys

    probe = ("import sys, stage1.config.load, stage1.config.typed, stage1.config.overrides\n"
             "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('stage1.') and m.count('.') >= 1}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert set(eval(done.stdout)) <= {"config", "core", "io"}, done.stdout
