"""The run directory remembers the settings it was built with (``--set`` values included), and a
later command that would change them is refused, by name, before it writes anything."""

from __future__ import annotations

import shutil
from pathlib import Path

from stage1 import cli
from stage1.core.errors import EXIT_INPUT
from stage1.io.settings_record import settings_changes
from stage1.stages.config import default_dump, dump_config, load_config


def _built_run(tmp_path: Path, *overrides: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config(None, list(overrides))))
    return run


def test_a_later_command_without_the_runs_set_values_is_refused_and_writes_nothing(tmp_path, capsys):
    """`evaluate` after `run --set dpo.beta=0.2` used to rewrite config.yaml with beta 0.1, append
    to run.log and touch the lock file, then retrain with other settings on the suggested rerun."""
    run = _built_run(tmp_path, "dpo.beta=0.2")
    before = (run / "config.yaml").read_bytes()
    for command in (["evaluate"], ["train-dpo"], ["run"], ["evaluate", "--set", "dpo.beta=0.3"]):
        assert cli.main([*command, "--run-dir", str(run)]) == EXIT_INPUT
        err = capsys.readouterr().err
        assert "dpo.beta: 0.2 ->" in err and "--force" in err and f"--config {run / 'config.yaml'}" in err
        assert (run / "config.yaml").read_bytes() == before
        assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # no run.log, no lock note


def test_a_refused_setting_leaves_the_run_config_alone(tmp_path, capsys):
    run = _built_run(tmp_path, "dpo.beta=0.2")
    before = (run / "config.yaml").read_bytes()
    assert cli.main(["evaluate", "--run-dir", str(run), "--set", "eval.variants=[]"]) == EXIT_INPUT
    assert "field 'eval.variants': names no variant" in capsys.readouterr().err
    assert (run / "config.yaml").read_bytes() == before and sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_the_recorded_config_reproduces_the_runs_settings(tmp_path):
    """The hint's `--config R/config.yaml` gives exactly the settings the run was built with."""
    run = _built_run(tmp_path, "dpo.beta=0.2", "negatives.per_example=3")
    recorded = (run / "config.yaml").read_text()
    assert settings_changes(recorded, dump_config(load_config(run / "config.yaml"))) == []
    assert settings_changes(recorded, dump_config(load_config(None, ["dpo.beta=0.2", "negatives.per_example=3"]))) == []
    changes = settings_changes(recorded, dump_config(load_config(None, ["dpo.beta=0.2"])))
    assert len(changes) == 1 and changes[0].startswith("negatives.per_example: 3 ->")


def test_where_the_log_goes_and_a_copy_of_an_input_are_not_setting_changes(tmp_path):
    pool = Path(load_config(None).data.instructions)
    mine = tmp_path / "mine.jsonl"
    shutil.copy(pool, mine)
    recorded = dump_config(load_config(None))
    assert settings_changes(recorded, dump_config(load_config(None, ["run.log_file=logs/other.log"]))) == []
    assert settings_changes(recorded, dump_config(load_config(None, [f"data.instructions={mine}"]))) == []
    mine.write_text(mine.read_text().splitlines()[0] + "\n")
    assert [c.split(":")[0] for c in settings_changes(recorded, dump_config(load_config(None, [f"data.instructions={mine}"])))] == [
        "data.instructions"]


def test_force_accepts_new_settings_and_nothing_else_does(tmp_path, monkeypatch):
    """--force (all, or one stage) is how a user says the new settings are meant."""
    import stage1.pipeline

    seen = []
    monkeypatch.setattr(stage1.pipeline, "run_pipeline", lambda *a, **k: seen.append(k["keep_settings"]))
    run = _built_run(tmp_path, "dpo.beta=0.2")
    for extra, keep in (([], True), (["--force"], False), (["--force", "eval"], False)):
        assert cli.main(["run", "--run-dir", str(run), *extra]) == 0
        assert seen.pop() is keep


def _without(config_yaml: str, section: str, key: str) -> str:
    import yaml

    data = yaml.safe_load(config_yaml)
    del data[section][key]
    return yaml.safe_dump(data, sort_keys=True)


def test_a_setting_added_after_the_run_was_recorded_is_no_change_at_its_default(tmp_path, capsys):
    """A run recorded before ``negatives.off_topic_from`` existed: its own config.yaml, and any
    command that leaves the new setting at its default, go on; the setting set otherwise is
    refused by name. (Before, every setting added to the code made every earlier run refuse even
    the hint's `--config R/config.yaml`.)"""
    old = _without(dump_config(load_config(None, ["dpo.beta=0.2"])), "negatives", "off_topic_from")
    assert settings_changes(old, dump_config(load_config(None, ["dpo.beta=0.2"])), default_dump()) == []
    changed = settings_changes(old, dump_config(load_config(None, ["dpo.beta=0.2", "negatives.off_topic_from=same_category"])),
                               default_dump())
    assert changed == ["negatives.off_topic_from: '(unset)' -> 'same_category'"]
    assert settings_changes(old, dump_config(load_config(None, ["dpo.beta=0.2"])))  # without the defaults: a change
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(old)
    code = cli.main(["evaluate", "--run-dir", str(run), "--config", str(run / "config.yaml"), "--set", "negatives.off_topic_from=same_category"])
    assert code == EXIT_INPUT and "negatives.off_topic_from: '(unset)' -> 'same_category'" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == old


def test_the_defaults_dump_names_every_typed_setting_at_its_code_default():
    import yaml

    defaults = yaml.safe_load(default_dump())
    assert defaults["negatives"]["off_topic_from"] == "other_categories" and defaults["run"]["seed"] == 0
    assert set(defaults) == {"run", "model", "data", "sft_data", "negatives", "pairs", "training", "eval"}
