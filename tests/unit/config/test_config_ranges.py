"""Values that cannot train are refused when the config is read, naming the field and where the value
came from (a YAML line or the ``--set`` argument), never later as a traceback from TRL or PEFT."""

from __future__ import annotations

import json
import re

import pytest

from stage1.core.errors import ConfigError
from stage1.stages.config import load_config


def _write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _refused(overrides, preset="tiny") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(preset, overrides)
    return caught.value


# ---------------------------------------------------------------- 1. ranges


@pytest.mark.parametrize(
    "override, field",
    [
        ("dpo.beta=-1", "dpo.beta"),
        ("dpo.beta=0", "dpo.beta"),
        ("dpo.loss_type=sigmoidd", "dpo.loss_type"),
        ("dpo.loss_type=[sigmoid, hingee]", "dpo.loss_type"),
        ("dpo.loss_weights=[0.5, 0.5]", "dpo.loss_weights"),  # two weights for the one default loss
        ("sft.loss_type=sigmoid", "sft.loss_type"),
        ("lora.r=0", "lora.r"),
        ("lora.r=2.5", "lora.r"),
        ("lora.lora_alpha=0", "lora.lora_alpha"),
        ("lora.lora_dropout=1", "lora.lora_dropout"),
        ("lora.lora_dropout=-0.1", "lora.lora_dropout"),
        ("sft.learning_rate=-1", "sft.learning_rate"),
        ("dpo.learning_rate=0", "dpo.learning_rate"),
        ("sft.max_steps=-5", "sft.max_steps"),
        ("sft.max_steps=0", "sft.max_steps"),
        ("dpo.max_steps=2.5", "dpo.max_steps"),
        ("sft.num_train_epochs=0", "sft.num_train_epochs"),
        ("sft.per_device_train_batch_size=0", "sft.per_device_train_batch_size"),
        ("dpo.per_device_eval_batch_size=0", "dpo.per_device_eval_batch_size"),
        ("sft.gradient_accumulation_steps=0", "sft.gradient_accumulation_steps"),
        ("sft.max_length=0", "sft.max_length"),
        ("dpo.max_length=-3", "dpo.max_length"),
        ("sft.warmup_steps=-0.1", "sft.warmup_steps"),
        ("sft.warmup_steps=2.5", "sft.warmup_steps"),
        ("sft.lr_scheduler_type=cosin", "sft.lr_scheduler_type"),
    ],
)
def test_out_of_range_values_are_refused_at_load(override, field):
    error = _refused([override])
    assert error.field == field
    assert str(error).startswith(f"--set {override}: field '{field}': "), str(error)


@pytest.mark.parametrize(
    "override",
    [
        "sft.max_steps=-1",
        "sft.max_length=null",
        "dpo.max_length=null",
        "lora.lora_dropout=0",
        "sft.warmup_steps=0.5",
        "sft.warmup_steps=10",
        "dpo.loss_type=ipo",
        "dpo.loss_type=[sigmoid, sft]",
        "dpo.loss_weights=[1.0]",
        "sft.loss_type=dft",
        "sft.num_train_epochs=0.5",
        "lora.lora_alpha=0.5",
    ],
)
def test_values_at_the_edge_of_their_range_load(override):
    load_config("tiny", [override])


def test_the_accepted_loss_types_are_the_installed_trl_ones():
    """Our lists were read from trl's source; if trl adds or drops one, this says so."""
    import dataclasses

    from trl import DPOConfig, SFTConfig

    from stage1.train.trainer_config import DPO_LOSS_TYPES, SFT_LOSS_TYPES

    fields = {f.name: f for f in dataclasses.fields(DPOConfig)}
    documented = re.findall(r"`'([a-z_]+)'`", fields["loss_type"].metadata["help"])
    assert set(DPO_LOSS_TYPES) == set(documented)
    sft = {f.name: f for f in dataclasses.fields(SFTConfig)}["loss_type"]
    assert set(SFT_LOSS_TYPES) == set(sft.metadata["choices"])


def test_the_error_says_what_is_accepted():
    assert "sigmoid" in str(_refused(["dpo.loss_type=sigmoidd"]))
    assert "-1 (train by epochs)" in str(_refused(["sft.max_steps=-5"]))
    assert "warmup_steps" in str(_refused(["sft.warmup_ratio=0.1"]))


def test_yaml_values_are_checked_too_with_their_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, "dpo:\n  max_steps: 3\n  beta: -0.5\n"))
    assert (caught.value.field, caught.value.line) == ("dpo.beta", 3)


# ---------------------------------------------------------------- 2. target_modules given as one string


def test_a_single_module_name_is_one_target_not_its_characters():
    config = load_config("tiny", ["lora.target_modules=q_proj", "training.require_all_projections=false"])
    assert config.lora["target_modules"] == ["q_proj"]
    from stage1.hf.memplan import plan_for_config

    plan_for_config(config)  # was: unknown LoRA target(s) ['q', '_', 'p', 'r', 'o', 'j']
    error = _refused(["lora.target_modules=q_proj"])
    assert error.field == "lora.target_modules" and "leaves out k_proj" in str(error)
    assert "'_'" not in str(error)


def test_all_linear_is_the_seven_qwen2_projections():
    from stage1.hf.lora import QWEN2_PROJECTIONS

    config = load_config("tiny", ["lora.target_modules=all-linear"])
    assert config.lora["target_modules"] == list(QWEN2_PROJECTIONS)


@pytest.mark.parametrize("value", [".*proj", "q_proj,v_proj", "[1, 2]", "[]"])
def test_other_target_strings_are_refused_with_the_list_form(value):
    error = _refused([f"lora.target_modules={value}"])
    assert error.field.startswith("lora.target_modules")
    assert str(error).startswith(f"--set lora.target_modules={value}: ")


# ---------------------------------------------------------------- 3. --set attribution


def test_set_errors_name_the_set_argument_not_a_yaml_line():
    error = _refused(["sft.learning_rate=-1"])
    assert (error.path, error.line) == ("--set sft.learning_rate=-1", None)
    assert str(error).startswith("--set sft.learning_rate=-1: field 'sft.learning_rate': ")
    error = _refused(["training.sample_prompts=0"])
    assert str(error).startswith("--set training.sample_prompts=0: field 'training.sample_prompts': ")
    error = _refused(["run.seed=three"])
    assert str(error).startswith("--set run.seed=three: field 'run.seed': ")
    error = _refused(["negatives.per_exampel=2"])
    assert str(error).startswith("--set negatives.per_exampel=2: field 'negatives.per_exampel': ")


def test_a_set_of_a_whole_section_is_named_for_its_keys():
    error = _refused(["lora={r: 0, lora_alpha: 8}"])
    assert str(error).startswith("--set lora={r: 0, lora_alpha: 8}: field 'lora.r': ")


def test_yaml_errors_keep_their_line_next_to_unrelated_sets(tmp_path):
    path = _write(tmp_path, "sft:\n  learning_rate: -1.0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["dpo.beta=0.2"])
    assert (caught.value.path, caught.value.line) == (str(path), 2)


def test_cli_plan_refuses_a_bad_set_with_exit_2(capsys):
    from stage1 import cli

    assert cli.main(["plan", "--set", "dpo.loss_type=sigmoidd"]) == 2
    err = capsys.readouterr().err
    assert "--set dpo.loss_type=sigmoidd: field 'dpo.loss_type'" in err and "Traceback" not in err


# ---------------------------------------------------------------- 4. duplicate keys


def test_duplicate_keys_are_refused_at_the_second_occurrence(tmp_path):
    path = _write(tmp_path, "dpo:\n  beta: 0.1\n  max_steps: 3\n  beta: 0.5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), 4, "dpo.beta")
    assert "line 2" in str(error)


def test_duplicate_sections_are_refused(tmp_path):
    path = _write(tmp_path, "sft:\n  max_steps: 3\nrun:\n  seed: 1\nsft:\n  max_steps: 5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.line, caught.value.field) == (5, "sft")


# ---------------------------------------------------------------- 5. encodings


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "latin-1"])
def test_a_config_that_is_not_utf8_names_the_file(tmp_path, encoding):
    path = tmp_path / "c.yaml"
    path.write_bytes("run:\n  seed: 1  # café\n".encode(encoding))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == str(path) and "UTF-8" in str(caught.value)


def test_a_utf8_config_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("run:\n  seed: 3  # café\n".encode("utf-8-sig"))
    assert load_config(path).run.seed == 3


# ---------------------------------------------------------------- 6. model.path


def _refused_model(folder) -> ConfigError:
    error = _refused([f"model.path={folder}"])
    assert error.field == "model.path" and error.path == f"--set model.path={folder}"
    return error


def test_model_path_that_is_an_adapter_folder_says_so(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"not used")
    assert "LoRA adapter" in str(_refused_model(adapter))


def test_model_path_that_is_not_a_model_folder(tmp_path, tiny_model_dir):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json" in str(_refused_model(empty))
    no_type = tmp_path / "no_type"
    no_type.mkdir()
    (no_type / "config.json").write_text(json.dumps({"hidden_size": 8}))
    (no_type / "model.safetensors").write_bytes(b"x")
    assert "model_type" in str(_refused_model(no_type))
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    assert "safetensors" in str(_refused_model(pickled))
    a_file = tmp_path / "weights.safetensors"
    a_file.write_bytes(b"x")
    assert "not a folder" in str(_refused_model(a_file))


def test_model_path_of_a_real_model_or_not_yet_downloaded_loads(tmp_path, tiny_model_dir):
    assert load_config("tiny", [f"model.path={tiny_model_dir}"]).model.path == str(tiny_model_dir)
    # the memory plan is read before the weights are downloaded (python cli.py plan --config qwen2.5-32b)
    assert load_config("tiny", [f"model.path={tmp_path / 'later'}"]).model.path == str(tmp_path / "later")
