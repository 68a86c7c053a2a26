"""EvalSettings from a YAML section and VariantSpec: unknown keys, wrong types and impossible values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from stage1.core.errors import ConfigError
from stage1.eval.settings import DEFAULT_COMPARISONS, VARIANT_NAMES, EvalSettings, VariantSpec, parse_comparison
from stage1.eval.stage import select_variants


def test_defaults_are_the_tiny_preset_and_every_variant():
    settings = EvalSettings.from_dict({})
    assert settings == EvalSettings()
    assert settings.variants == VARIANT_NAMES == ("base_raw", "base", "sft", "dpo", "dpo_only", "dpo_rules", "dpo_policy")
    assert settings.comparison_pairs[0] == ("base_raw", "base")
    assert len(settings.comparison_pairs) == len(DEFAULT_COMPARISONS)


def test_from_a_yaml_section():
    settings = EvalSettings.from_dict({"variants": ["base", "sft"], "limit": 10, "q": 0.1, "comparisons": ["base->sft"]})
    assert settings.variants == ("base", "sft") and settings.limit == 10 and settings.comparison_pairs == (("base", "sft"),)


@pytest.mark.parametrize(
    ("section", "field", "message"),
    [
        ({"max_new_token": 5}, "eval.max_new_token", "did you mean 'max_new_tokens'"),
        ({"batch_size": "8"}, "eval.batch_size", "expected int"),
        ({"batch_size": 0}, "eval.batch_size", "at least 1"),
        ({"variants": ["base", "rlhf"]}, "eval.variants", "unknown variant"),
        ({"variants": ["base", "base"]}, "eval.variants", "twice"),
        ({"comparisons": ["base-sft"]}, "eval.comparisons", "BEFORE->AFTER"),
        ({"comparisons": ["sft->sft"]}, "eval.comparisons", "BEFORE->AFTER"),
        ({"q": 0}, "eval.q", "(0, 1]"),
        ({"confidence": 1.0}, "eval.confidence", "(0, 1)"),
        ({"limit": 0}, "eval.limit", "at least 1"),
        ({"dtype": "fp8"}, "eval.dtype", "must be one of"),
        ({"families": {"study": ["base->sft"]}}, "eval.families", "is in no family"),
        ({"families": {"a": ["base->sft"], "b": ["base->sft"]}, "comparisons": ["base->sft"]}, "eval.families.b", "two families"),
        ({"families": {"a": []}, "comparisons": []}, "eval.families.a", "at least one comparison"),
        ({"families": {"a": ["base-sft"]}, "comparisons": []}, "eval.families.a", "BEFORE->AFTER"),
    ],
)
def test_bad_sections_name_the_key(section, field, message):
    with pytest.raises(ConfigError) as caught:
        EvalSettings.from_dict(section)
    assert caught.value.field == field
    assert message in str(caught.value)


def test_parse_comparison():
    assert parse_comparison(" base -> dpo_only ") == ("base", "dpo_only")


def test_variant_spec_round_trip_and_validation():
    spec = VariantSpec("dpo", Path("run/merged"), adapter_dir=Path("run/dpo/adapter"), quantization="nf4")
    assert VariantSpec.from_dict(spec.to_dict()) == spec
    assert VariantSpec("base", "run/model").model_dir == Path("run/model")
    with pytest.raises(ConfigError, match="unknown variant"):
        VariantSpec("chat", Path("m"))
    with pytest.raises(ConfigError, match="unknown quantization"):
        VariantSpec("base", Path("m"), quantization="4bit")


def test_variants_missing_on_disk_or_unselected_are_skipped_with_a_reason(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    given = [
        VariantSpec("base", model),
        VariantSpec("base_raw", model, use_format=False),
        VariantSpec("sft", tmp_path / "merged"),
        VariantSpec("dpo", model, adapter_dir=tmp_path / "dpo" / "adapter"),
    ]
    chosen, skipped = select_variants(EvalSettings(variants=("base", "sft", "dpo", "dpo_only")), given)
    assert [spec.name for spec in chosen] == ["base"]
    assert skipped == {
        "base_raw": "not selected (eval.variants)",
        "sft": f"model folder not found: {tmp_path / 'merged'}",
        "dpo": f"adapter not found: {tmp_path / 'dpo' / 'adapter'}",
        "dpo_only": "no model given for this variant",
    }
    with pytest.raises(ConfigError, match="given twice"):
        select_variants(EvalSettings(), [VariantSpec("base", model), VariantSpec("base", model)])


def test_default_families_keep_the_format_check_out_of_the_study():
    """The study's four comparisons are one BH family; base_raw->base is a family of its own."""
    families = EvalSettings().family_pairs
    assert families["study"] == (("base", "sft"), ("sft", "dpo"), ("base", "dpo_only"), ("dpo_only", "dpo"))
    assert families["format_sensitivity"] == (("base_raw", "base"),)
    custom = EvalSettings.from_dict({"comparisons": ["base->sft", "sft->dpo"], "families": {"one": ["base->sft"], "two": ["sft->dpo"]}})
    assert custom.family_pairs == {"one": (("base", "sft"),), "two": (("sft", "dpo"),)}
