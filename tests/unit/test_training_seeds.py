"""Training seeds (``training.seeds``): the setting, the steps each further seed adds, where its
files lie, and the ``seeds`` stage that reads every seed's evaluation. No model: a two-seed tiny run
end to end is in ``tests/integration/test_training_seeds_e2e.py``."""

from __future__ import annotations

import functools
import json
import random

import pytest

from stage1 import pipeline
from stage1.config.typed import settings_to_dict
from stage1.core.errors import ConfigError
from stage1.eval import spec as eval_spec
from stage1.io.layout import RunLayout, SeedLayout
from stage1.io.stage_spec import StageCall
from stage1.pipeline import build_steps
from stage1.stages.config import load_config
from stage1.stages.seeds import planned_stages
from stage1.train.settings import TrainingSettings
from tests.unit.eval.test_seed_evaluations import _results

SEEDED = ("sft", "merge", "dpo", "dpo_only", "eval")


def _steps(tmp_path, *sets: str):
    return {step.name: step for step in build_steps(load_config(None, list(sets), check_training=False), tmp_path)}


def test_seeds_are_in_numpys_range_listed_once_and_none_by_default():
    assert TrainingSettings().seeds == ()
    assert TrainingSettings.from_dict({"seeds": [0, 7, 2]}).seeds == (0, 7, 2)
    with pytest.raises(ConfigError, match="listed twice") as error:
        TrainingSettings.from_dict({"seeds": [1, 1]})
    assert error.value.field == "training.seeds"
    for bad in (-1, 2**32):
        with pytest.raises(ConfigError, match="numpy's seed range"):
            TrainingSettings.from_dict({"seeds": [0, bad]})
    assert "seeds" not in TrainingSettings(seeds=(0, 1)).recorded(), "how many trainings a run holds is no stage's setting"


def test_a_seed_list_must_name_the_runs_own_seed_and_nothing_is_written_before_it_says_so(tmp_path):
    config = load_config(None, ["training.seeds=[1, 2]"], check_training=False)
    with pytest.raises(ConfigError, match=r"run.seed = 0") as error:
        pipeline.run_pipeline(config, tmp_path / "run")
    assert error.value.field == "training.seeds" and "[0, 1, 2]" in error.value.hint
    assert not (tmp_path / "run").exists()
    assert _steps(tmp_path, "run.seed=2", "training.seeds=[1, 2]")["seed-1/sft"].settings["seed"] == 1


@pytest.mark.parametrize("sets", [[], ["training.seeds=[0]"]])
def test_one_seed_is_the_run_as_without_the_setting(tmp_path, sets):
    plain, one = _steps(tmp_path), _steps(tmp_path, *sets)
    assert list(one) == list(plain)
    for name, step in plain.items():
        assert settings_to_dict(one[name].settings) == settings_to_dict(step.settings), name
        assert (one[name].reads, one[name].out_dir, one[name].upstream) == (step.reads, step.out_dir, step.upstream), name


def test_each_further_seed_trains_and_evaluates_again_into_its_own_folder(tmp_path):
    """The run's own stages keep their settings and files; seed 3 adds its own SFT, hand-off, DPO,
    DPO-only and evaluation (settings the same but the seed), reading the run's data stages and its
    own upstream models; the seeds stage comes last and reads both seeds' results."""
    plain, seeded = _steps(tmp_path), _steps(tmp_path, "training.seeds=[0, 3]")
    assert list(seeded) == [*plain, *(f"seed-3/{stage}" for stage in SEEDED), "seeds"]
    for name, step in plain.items():
        assert settings_to_dict(seeded[name].settings) == settings_to_dict(step.settings), name
        assert seeded[name].reads == step.reads, name
    own, seed = RunLayout(tmp_path), SeedLayout(tmp_path, None, 3)
    for stage in SEEDED:
        step, base = seeded[f"seed-3/{stage}"], plain[stage]
        assert step.stage == stage and step.out_dir == seed.stage_dir(stage) == tmp_path / "seeds" / "seed-3" / own.stage_dir(stage).name
        expected = settings_to_dict(base.settings)
        if stage in ("sft", "dpo", "dpo_only"):
            assert expected["seed"] == 0
            expected["seed"] = 3
        assert settings_to_dict(step.settings) == expected, stage
    assert seeded["seed-3/dpo"].reads["model"] == seed.merged and seeded["seed-3/dpo"].reads["train"] == own.pairs_train
    assert seeded["seed-3/merge"].reads["adapter"] == seed.sft_adapter and seeded["seed-3/sft"].reads["train"] == own.sft_train
    assert seeded["seed-3/eval"].reads["run/dpo"] == seed.adapter("dpo") and seeded["seed-3/eval"].reads["run/model"] == own.model
    assert seeded["seed-3/dpo"].upstream == ("seed-3/merge", "pairs", "seed-3/sft")
    assert seeded["seeds"].reads == {"run/seed_0": own.results, "run/seed_3": seed.results}
    assert seeded["seeds"].out_dir == tmp_path / "seeds" / "summary", "beside the seeds' folders, not around them"


def test_a_further_seeds_evaluation_scores_that_seeds_models():
    planned = planned_stages(load_config(None, ["training.seeds=[0, 3]"], check_training=False), RunLayout("/r"))
    evaluation = next(stage for stage in planned if stage.name == "seed-3/eval")
    assert isinstance(evaluation.spec.entry, functools.partial) and evaluation.spec.entry.func is eval_spec.evaluate
    assert evaluation.spec.entry.keywords["layout"].stage_dir("dpo") == RunLayout("/r").run_dir / "seeds/seed-3/dpo"
    own = next(stage for stage in planned if stage.name == "eval")
    assert own.spec.entry is eval_spec.evaluate and own.config.run.seed == 0 and evaluation.config.run.seed == 3


def test_force_and_only_name_a_stage_for_every_seed_or_one_seeds_step(tmp_path):
    steps = list(_steps(tmp_path, "training.seeds=[0, 3]").values())
    assert [step.name for step in steps if step.is_named(("sft",))] == ["sft", "seed-3/sft"]
    assert [step.name for step in steps if step.is_named(("seed-3/sft",))] == ["seed-3/sft"]
    config = load_config(None, ["training.seeds=[0, 3]"], check_training=False)
    pipeline._checked_steps(config, tmp_path / "run", None, ("seed-3/dpo",), ())
    with pytest.raises(ConfigError, match="unknown stage 'seed-4/dpo'"):
        pipeline._checked_steps(config, tmp_path / "run", None, ("seed-4/dpo",), ())


def test_the_seeds_stage_reads_every_seeds_results_in_the_lists_order(tmp_path):
    rng = random.Random(8)
    config = load_config(None, ["training.seeds=[5, 0, 2]", "run.seed=0"], check_training=False)
    layout = RunLayout(tmp_path)
    runs = {seed: _results(rng, shift) for seed, shift in ((5, 0.3), (0, 0.1), (2, 0.2))}
    for seed, results in runs.items():
        path = (layout if seed == 0 else layout.for_seed(seed)).results
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(results), encoding="utf-8")
    out = layout.stage_dir("seeds")
    manifest = eval_spec.seeds(StageCall(config, {"run": tmp_path}, out))
    summary = json.loads((out / "seeds.json").read_text(encoding="utf-8"))
    assert summary["seed_values"] == [5, 0, 2] and manifest["counts"]["seeds"] == 3
    assert summary["rates"]["sft"]["stopped_with_end"]["per_seed"] == [
        runs[seed]["rates"]["sft"]["stopped_with_end"]["rate"] for seed in (5, 0, 2)]
    assert "seeds 5, 0, 2" in (out / "seeds.md").read_text(encoding="utf-8")
    assert (out / "manifest.json").is_file()
