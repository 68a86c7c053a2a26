"""DPO arms (``training.dpo_arms``): the setting, the arms' stages and variants, the pairs each trains
on, and the report's side-by-side section. No model: the arms end to end are in
``tests/integration/test_policy_pairs_e2e.py``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stage1.config.typed import settings_to_dict
from stage1.core.errors import ConfigError, InputError
from stage1.core.eval_items import EvalResponse
from stage1.core.format import render_completion, render_prompt
from stage1.core.records import PreferencePair, plain_fields
from stage1.eval.report_markdown import render_markdown
from stage1.eval.settings import (
    ARMS_FAMILY,
    DEFAULT_COMPARISONS,
    DEFAULT_FAMILIES,
    EvalSettings,
    VariantSpec,
    settings_for_run,
    variants_in_run,
)
from stage1.eval.stage import select_variants
from stage1.eval.summary import summarise
from stage1.io.atomic import atomic_write_jsonl
from stage1.io.layout import RunLayout
from stage1.io.records import read_eval_items, read_records
from stage1.pipeline import build_steps
from stage1.stages.config import load_config
from stage1.train.dpo import pairs_of_source, read_arm_pairs
from stage1.train.settings import TrainingSettings

ARMS = ["--set", "negatives.source=mixed", "--set", "training.dpo_arms=[rules,policy]"]
CLASSIC = ("base_raw", "base", "sft", "dpo", "dpo_only")
GOLDEN_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "golden"


def _config(*sets: str):
    return load_config(None, [text for text in sets if text != "--set"])


def test_arms_are_known_sources_listed_once_and_none_by_default():
    assert TrainingSettings().dpo_arms == ()
    assert TrainingSettings.from_dict({"dpo_arms": ["policy", "rules"]}).dpo_arms == ("policy", "rules")
    with pytest.raises(ConfigError, match="unknown pair source 'sampled'") as error:
        TrainingSettings.from_dict({"dpo_arms": ["sampled"]})
    assert error.value.field == "training.dpo_arms" and "rules, policy" in error.value.hint
    with pytest.raises(ConfigError, match="listed twice"):
        TrainingSettings.from_dict({"dpo_arms": ["rules", "rules"]})


@pytest.mark.parametrize("source", ["rules", "policy"])
def test_arms_need_pairs_of_both_sources_and_say_which_setting_and_argument(source):
    with pytest.raises(ConfigError, match=f"negatives.source: {source} makes {source} pairs only") as error:
        _config(f"negatives.source={source}", "training.dpo_arms=[rules,policy]")
    assert error.value.field == "training.dpo_arms"
    assert str(error.value.path) == "--set training.dpo_arms=[rules,policy]"
    assert "negatives.source: mixed" in error.value.hint


def test_arms_leave_every_other_stage_as_it_was_and_add_one_stage_each(tmp_path):
    """Settings and reads of every stage a mixed run had are the same with arms (nothing reruns but
    evaluation); each arm is ``dpo``'s step with its source added, in its own folder."""
    plain = {step.name: step for step in build_steps(_config("negatives.source=mixed"), tmp_path)}
    armed = {step.name: step for step in build_steps(_config(*ARMS), tmp_path)}
    assert list(armed) == [*list(plain)[:-1], "dpo_rules", "dpo_policy", "eval"]
    for name, step in plain.items():
        if name != "eval":
            assert settings_to_dict(armed[name].settings) == settings_to_dict(step.settings), name
            assert armed[name].reads == step.reads, name
    for source in ("rules", "policy"):
        arm = armed[f"dpo_{source}"]
        assert settings_to_dict(arm.settings) == {**settings_to_dict(plain["dpo"].settings), "negative_source": source}
        assert arm.reads == plain["dpo"].reads and arm.out_dir == RunLayout(tmp_path).stage_dir(f"dpo_{source}")
        assert arm.out_dir.name == f"dpo_{source}"
    assert {"run/dpo_rules", "run/dpo_policy"} <= set(armed["eval"].reads) and "run/dpo_rules" not in plain["eval"].reads
    assert "dpo_arms" not in settings_to_dict(armed["dpo"].settings)["training"]


def test_a_run_without_arms_evaluates_records_and_fingerprints_what_it_did_before():
    settings = settings_for_run(EvalSettings(), ())
    assert settings.variants == CLASSIC
    assert settings_to_dict(settings) == settings_to_dict(EvalSettings(variants=CLASSIC))
    assert settings.comparisons == DEFAULT_COMPARISONS and settings.families == DEFAULT_FAMILIES
    chosen = EvalSettings(variants=("sft", "dpo"))
    assert settings_for_run(chosen, ()) is chosen


def test_arms_add_their_variants_and_comparisons_in_a_family_of_their_own():
    settings = settings_for_run(EvalSettings(), ("rules", "policy"))
    assert settings.variants == (*CLASSIC, "dpo_rules", "dpo_policy")
    assert settings.comparisons == (*DEFAULT_COMPARISONS, "sft->dpo_rules", "sft->dpo_policy", "dpo_rules->dpo_policy")
    assert settings.families[ARMS_FAMILY] == ("sft->dpo_rules", "sft->dpo_policy", "dpo_rules->dpo_policy")
    assert settings_for_run(EvalSettings(), ("policy",)).comparisons == (*DEFAULT_COMPARISONS, "sft->dpo_policy")
    # a comparison already configured is kept where the user put it, once
    own = EvalSettings(comparisons=("sft->dpo", "dpo_policy->dpo_rules", "sft->dpo_rules"),
                       families={"mine": ("sft->dpo", "dpo_policy->dpo_rules", "sft->dpo_rules")})
    ran = settings_for_run(own, ("rules", "policy"))
    assert ran.comparisons == (*own.comparisons, "sft->dpo_policy", "dpo_rules->dpo_policy")
    assert ran.families == {"mine": own.families["mine"], ARMS_FAMILY: ("sft->dpo_policy", "dpo_rules->dpo_policy")}
    # listed in a family but not compared: compared now, in that family
    listed = EvalSettings(comparisons=("sft->dpo",), families={"mine": ("sft->dpo", "sft->dpo_rules")})
    assert settings_for_run(listed, ("rules",)).families == listed.families


@pytest.mark.parametrize("handoff", ["merge", "adapter"])
def test_each_arm_is_the_sft_model_with_its_own_adapter_and_names_its_source(tmp_path, handoff):
    layout = RunLayout(tmp_path)
    specs = {spec.name: spec for spec in variants_in_run(layout, "nf4", handoff, ("rules", "policy"))}
    assert "dpo_rules" not in {spec.name for spec in variants_in_run(layout, "nf4", handoff)}
    for source in ("rules", "policy"):
        arm = specs[f"dpo_{source}"]
        assert arm.model_dir == specs["dpo"].model_dir and arm.adapter_dir == tmp_path / f"dpo_{source}" / "adapter"
        assert arm.quantization == "nf4" and arm.pairs_source == source
        assert arm.to_dict()["pairs_source"] == source and VariantSpec.from_dict(arm.to_dict()) == arm
    assert "pairs_source" not in specs["dpo"].to_dict()  # other variants' jobs keep their fingerprints


def test_untrained_arms_are_not_part_of_the_run_and_not_listed_as_skipped(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    chosen, skipped = select_variants(EvalSettings(), [VariantSpec("base", model)])
    assert [spec.name for spec in chosen] == ["base"] and set(skipped) == {"base_raw", "sft", "dpo", "dpo_only"}
    arm = VariantSpec("dpo_policy", model, adapter_dir=tmp_path / "dpo_policy" / "adapter", pairs_source="policy")
    _, skipped = select_variants(EvalSettings(), [VariantSpec("base", model), arm])
    assert skipped["dpo_policy"] == f"adapter not found: {tmp_path / 'dpo_policy' / 'adapter'}"


def _pair(index: int, source: str) -> PreferencePair:
    kind = "policy:stopped_with_end" if source == "policy" else "off_topic"
    rejected = " Wrong." if source == "policy" else render_completion(f"Other {index}.")
    return PreferencePair(render_prompt(f"Question {index}?"), render_completion(f"Answer {index}."), rejected, str(index),
                          "general", kind, "train", source)


def test_an_arm_trains_on_its_sources_pairs_with_their_file_lines(tmp_path):
    path = atomic_write_jsonl(tmp_path / "train.jsonl",
                              (plain_fields(_pair(i, s)) for i, s in enumerate(["rules", "rules", "policy", "rules"])))
    pairs = read_records(path, PreferencePair)
    assert pairs_of_source(pairs, None) is pairs
    rules = pairs_of_source(pairs, "rules")
    assert [p.instruction_id for p in rules] == ["0", "1", "3"] and rules.lines == [1, 2, 4]
    policy = read_arm_pairs(path, "policy", "train")
    assert [p.negative_source for p in policy] == ["policy"] and policy.lines == [3]


def test_an_arm_without_pairs_of_its_source_names_the_file_and_the_setting(tmp_path):
    path = atomic_write_jsonl(tmp_path / "eval.jsonl", (plain_fields(_pair(i, "rules")) for i in range(2)))
    with pytest.raises(InputError, match="the policy arm has no policy pair in the eval split") as error:
        read_arm_pairs(path, "policy", "eval")
    assert error.value.field == "training.dpo_arms" and Path(error.value.path) == path
    assert "sources there: rules" in str(error.value)


def test_the_report_shows_the_arms_side_by_side_with_the_pairs_each_trained_on():
    items = read_eval_items(GOLDEN_DIR / "items.jsonl")
    names = {"base": "dpo_rules", "sft": "dpo_policy"}
    responses: dict[str, dict[str, EvalResponse]] = {}
    for response in read_records(GOLDEN_DIR / "responses.jsonl", EvalResponse):
        responses.setdefault(names[response.variant], {})[response.item_id] = response
    settings = settings_for_run(EvalSettings(variants=("dpo",)), ("rules", "policy"))
    results = summarise(items, responses, pairs=settings.comparison_pairs, confidence=0.95, q=0.05, bootstrap_samples=200,
                        seed=0, min_category_items=4, families=settings.family_pairs)
    described = {name: {"model_dir": "run/merged", "adapter_dir": f"run/{name}/adapter", "quantization": "none",
                        "pairs_source": name.removeprefix("dpo_")} for name in responses}
    results.update(skipped_variants={}, provenance={"variants": described})
    shift = {"count": 4, "mean_chosen": -0.5, "mean_rejected": -2.0, "chosen_fell_share": 0.5, "rejected_fell_share": 1.0}
    results["dpo_training"] = {name: {
        "reward_accuracy": 0.75, "reward_margin": 0.5, "logp_shift": {**shift, "by_kind": {}, "by_source": {}}, "by_kind": {},
        "by_source": {}, "warnings": [],
        "pairs": {"train_by_source": {name.removeprefix("dpo_"): count}, "eval_pairs": 4, "arm_source": name.removeprefix("dpo_")},
    } for name, count in (("dpo_rules", 40), ("dpo_policy", 9))}
    assert "## Pair-source arms" not in render_markdown({**results, "provenance": {"variants": {}}}).split("\n")
    markdown = render_markdown(results)
    lines = markdown.split("\n")
    section = lines[lines.index("## Pair-source arms"):lines.index("## Paired comparisons")]
    rows = [line for line in section if line.startswith("| `dpo_")]
    assert rows == ["| `dpo_rules` | rules pairs | 40 | 4 | 0.750 | +0.5000 |", "| `dpo_policy` | policy pairs | 9 | 4 | 0.750 | +0.5000 |"]
    # The run evaluated the arms alone: their rates are the main table's columns, not printed twice.
    assert "| criterion | dpo_rules | dpo_policy |" not in section and "Their rates are the columns of the rates table above." in section
    responses["sft"] = {key: dataclasses.replace(r, variant="sft") for key, r in responses["dpo_rules"].items()}
    more = summarise(items, responses, pairs=settings.comparison_pairs, confidence=0.95, q=0.05, bootstrap_samples=200,
                     seed=0, min_category_items=4, families=settings.family_pairs)
    more.update({key: results[key] for key in ("skipped_variants", "provenance", "dpo_training")})
    with_sft = render_markdown(more).split("\n")
    section = with_sft[with_sft.index("## Pair-source arms"):with_sft.index("## Paired comparisons")]
    assert "| criterion | sft | dpo_rules | dpo_policy |" in section  # beside SFT's when the run evaluated more
    between = [c for c in results["comparisons"] if (c["before"], c["after"]) == ("dpo_rules", "dpo_policy")]
    assert between and sum(line.startswith("- dpo_rules → dpo_policy, ") for line in section) == len(between)
    assert "### Pair-source arms (training.dpo_arms)" in lines  # the arms' family of comparisons has its own table
    assert "`dpo_rules` trained on 40 rules pairs." in markdown and "`dpo_policy` trained on 9 policy pairs." in markdown
