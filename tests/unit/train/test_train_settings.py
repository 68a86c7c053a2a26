"""TrainingSettings and the TRL/PEFT section builders: unknown keys named with the nearest valid one."""

from __future__ import annotations

import dataclasses

import pytest

from stage1.core.errors import ConfigError
from stage1.hf.lora import QWEN2_PROJECTIONS, build_lora_config
from stage1.train.settings import TrainingSettings
from stage1.train.trainer_config import build_trainer_config, check_effective_batch, precision_defaults, stage_defaults


def test_defaults_are_the_tiny_cpu_preset():
    settings = TrainingSettings()
    assert (settings.quantization, settings.dtype, settings.merge_mode, settings.merge_device) == ("none", "float32", "16bit", "cpu")
    assert settings.overlong == "error" and settings.require_all_projections
    assert TrainingSettings.from_dict({}) == settings


def test_every_field_has_a_one_line_doc():
    import inspect

    source = inspect.getsource(TrainingSettings)
    for field in dataclasses.fields(TrainingSettings):
        line = next(line for line in source.splitlines() if line.strip().startswith(f"{field.name}:"))
        assert "#" in line, f"{field.name} has no doc comment"


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError) as error:
        TrainingSettings.from_dict({"quantisation": "nf4"})
    assert error.value.field == "training.quantisation"
    assert "quantization" in error.value.hint


@pytest.mark.parametrize(
    "data, field",
    [
        ({"quantization": "fp8"}, "training.quantization"),
        ({"target_effective_batch": 0}, "training.target_effective_batch"),
        ({"sample_every_steps": -1}, "training.sample_every_steps"),
        ({"merge_mode": "dequantized_nf4"}, "training.merge_mode"),
        ({"overlong": True}, "training.overlong"),
        ({"method_checks": "off"}, "training.method_checks"),
        ({"step0_loss_tolerance": 0}, "training.step0_loss_tolerance"),
        ({"step0_loss_tolerance": 1.5}, "training.step0_loss_tolerance"),
        ({"min_heldout_margin": "big"}, "training.min_heldout_margin"),
    ],
)
def test_impossible_values_are_refused_with_the_field(data, field):
    with pytest.raises(ConfigError) as error:
        TrainingSettings.from_dict(data)
    assert error.value.field == field


def test_the_dequantized_nf4_merge_is_refused_naming_what_to_use():
    """Reloaded in nf4 it kept almost none of the SFT gain (docs/notes/training.md)."""
    with pytest.raises(ConfigError, match="removed") as error:
        TrainingSettings.from_dict({"quantization": "nf4", "merge_mode": "dequantized_nf4"})
    assert error.value.field == "training.merge_mode" and "sft_handoff: adapter" in error.value.hint
    assert TrainingSettings.from_dict({"merge_mode": "16bit"}).merge_mode == "16bit"


def test_sft_section_refuses_renamed_and_owned_keys(tmp_path):
    from trl import SFTConfig

    defaults = stage_defaults(TrainingSettings(), "cpu", tmp_path)
    with pytest.raises(ConfigError) as error:
        build_trainer_config(SFTConfig, {"max_seq_length": 128}, section="sft", defaults=defaults, owned={"output_dir": str(tmp_path)})
    assert error.value.field == "sft.max_seq_length" and "max_length" in error.value.hint
    for owned in ("output_dir", "seed", "eos_token", "chat_template_path", "logging_nan_inf_filter"):
        with pytest.raises(ConfigError, match="set by the training stage"):
            build_trainer_config(SFTConfig, {owned: "x"}, section="sft", defaults=defaults, owned={"output_dir": str(tmp_path)})


def test_dpo_section_refuses_the_removed_max_prompt_length(tmp_path):
    from trl import DPOConfig

    defaults = stage_defaults(TrainingSettings(), "cpu", tmp_path)
    with pytest.raises(ConfigError) as error:
        build_trainer_config(DPOConfig, {"max_prompt_length": 64}, section="dpo", defaults=defaults, owned={"output_dir": str(tmp_path)})
    assert error.value.field == "dpo.max_prompt_length"
    config = build_trainer_config(DPOConfig, {"beta": 0.2, "loss_type": ["sigmoid"]}, section="dpo", defaults=defaults, owned={"output_dir": str(tmp_path)})
    assert config.beta == 0.2 and config.loss_type == ["sigmoid"] and config.logging_nan_inf_filter is False


def test_cpu_defaults_turn_off_bf16_autocast_and_checkpointing(tmp_path):
    from trl import SFTConfig

    cpu = precision_defaults(TrainingSettings(), "cpu")
    assert cpu == {"bf16": False, "fp16": False, "activation_checkpointing": False, "use_cpu": True}
    gpu = precision_defaults(TrainingSettings(quantization="nf4", dtype="bfloat16"), "cuda")
    assert gpu["bf16"] and gpu["activation_checkpointing"] and not gpu["use_cpu"]
    defaults = stage_defaults(TrainingSettings(), "cpu", tmp_path)
    config = build_trainer_config(SFTConfig, {}, section="sft", defaults=defaults, owned={"output_dir": str(tmp_path)})
    assert config.bf16 is False and config.gradient_checkpointing is False and config.report_to in ([], ["none"], "none")
    # TRL's older name still works, and the user's value beats the CPU default.
    config = build_trainer_config(SFTConfig, {"gradient_checkpointing": True}, section="sft", defaults=defaults, owned={"output_dir": str(tmp_path)})
    assert config.gradient_checkpointing is True and config.activation_checkpointing is True


def test_effective_batch_is_checked_against_the_target(tmp_path):
    from trl import SFTConfig

    defaults = stage_defaults(TrainingSettings(), "cpu", tmp_path)
    config = build_trainer_config(
        SFTConfig, {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}, section="sft", defaults=defaults, owned={"output_dir": str(tmp_path)}
    )
    batch = check_effective_batch(config, 8, section="sft", target_field="target_effective_batch")
    assert (batch.per_device, batch.accumulation, batch.processes, batch.size) == (4, 2, 1, 8)
    with pytest.raises(ConfigError) as error:
        check_effective_batch(config, 16, section="sft", target_field="target_effective_batch")
    assert "gradient_accumulation_steps: 4" in error.value.hint
    assert check_effective_batch(config, None, section="sft", target_field="target_effective_batch").size == 8


def test_lora_defaults_cover_all_seven_projections():
    config = build_lora_config({})
    assert set(config.target_modules) == set(QWEN2_PROJECTIONS)
    assert (config.r, config.lora_alpha, config.task_type) == (16, 32, "CAUSAL_LM")
    assert build_lora_config({"r": 4, "lora_alpha": 8, "lora_dropout": 0.1}).lora_dropout == 0.1


def test_lora_plan_drift_to_q_v_only_is_refused_unless_chosen():
    with pytest.raises(ConfigError) as error:
        build_lora_config({"target_modules": ["q_proj", "v_proj"]})
    assert error.value.field == "lora.target_modules" and "gate_proj" in str(error.value)
    chosen = build_lora_config({"target_modules": ["q_proj", "v_proj"]}, require_all_projections=False)
    assert set(chosen.target_modules) == {"q_proj", "v_proj"}


def test_lora_section_refuses_unknown_owned_and_regex_keys():
    with pytest.raises(ConfigError) as error:
        build_lora_config({"rank": 8})
    assert error.value.field == "lora.rank"
    with pytest.raises(ConfigError, match="set by the training stage"):
        build_lora_config({"task_type": "SEQ_CLS"})
    with pytest.raises(ConfigError, match="regular expression"):
        build_lora_config({"target_modules": ".*proj"})


def test_the_stage_builders_check_the_same_ranges_as_the_loader(tmp_path):
    """Stages run on explicit files build their configs directly: the ranges hold there too."""
    from trl import DPOConfig

    defaults = stage_defaults(TrainingSettings(), "cpu", tmp_path)
    for args, field in (({"beta": -1}, "dpo.beta"), ({"loss_type": "sigmoidd"}, "dpo.loss_type"), ({"max_steps": -5}, "dpo.max_steps")):
        with pytest.raises(ConfigError) as error:
            build_trainer_config(DPOConfig, args, section="dpo", defaults=defaults, owned={"output_dir": str(tmp_path)})
        assert error.value.field == field
    with pytest.raises(ConfigError) as error:
        build_lora_config({"r": 0})
    assert error.value.field == "lora.r"


def test_a_single_target_module_name_is_a_one_item_list():
    """PEFT would read a str as a pattern that must match the whole module path (it matches nothing)."""
    config = build_lora_config({"target_modules": "q_proj"}, require_all_projections=False)
    assert config.target_modules == {"q_proj"}
    assert set(build_lora_config({"target_modules": "all-linear"}).target_modules) == set(QWEN2_PROJECTIONS)
