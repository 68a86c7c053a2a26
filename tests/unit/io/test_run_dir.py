"""The run directory: lock, fingerprints, up-to-date checks, output paths."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stage1.core.errors import EXIT_INPUT, ConfigError, RunLockedError
from stage1.io.run_dir import (
    ContentHashes,
    RunLock,
    fingerprint,
    inside_run_dir,
    is_up_to_date,
    mark_done,
    read_stage_record,
)


def test_a_second_lock_on_the_same_run_directory_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match="in use by another stage1 process"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released on exit
        pass


def test_lock_held_by_another_process_is_refused_and_freed_when_it_dies(tmp_path):
    code = (
        "import sys, time; sys.path.insert(0, '.');"
        "from stage1.io.run_dir import RunLock;"
        f"lock = RunLock(__import__('pathlib').Path({str(tmp_path)!r})).__enter__();"
        "print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {child.pid}"):
            with RunLock(tmp_path):
                pass
    finally:
        child.kill()  # SIGKILL: the kernel drops the flock
        child.wait()
    with RunLock(tmp_path):
        pass


def test_fingerprint_changes_with_settings_and_the_content_read_never_with_paths_or_times(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('{"a": 1}\n')
    hashes = ContentHashes()
    base = fingerprint("s", {"x": 1}, {"data": hashes.snapshot(data)})
    assert fingerprint("s", {"x": 2}, {"data": hashes.snapshot(data)}) != base
    assert fingerprint("t", {"x": 1}, {"data": hashes.snapshot(data)}) != base
    moved = tmp_path / "elsewhere" / "copy.jsonl"
    moved.parent.mkdir()
    moved.write_text('{"a": 1}\n')
    os.utime(moved, ns=(1, 1))
    assert fingerprint("s", {"x": 1}, {"data": hashes.snapshot(moved)}) == base  # a copied run stays up to date
    data.write_text('{"a": 2}\n')
    assert fingerprint("s", {"x": 1}, {"data": hashes.snapshot(data)}) != base


def test_up_to_date_needs_record_outputs_and_unchanged_inputs(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("x\n")
    hashes = ContentHashes()
    reads = {"data": hashes.snapshot(data)}
    out = tmp_path / "out"
    out.mkdir()
    assert not is_up_to_date(out, "f", reads)
    (out / "out.jsonl").write_text("x\n")
    mark_done(out, "s", "f", ("out.jsonl",), reads)
    assert is_up_to_date(out, "f", reads)
    assert not is_up_to_date(out, "g", reads)
    assert not is_up_to_date(out, "f", {"data": {}})
    (out / "out.jsonl").unlink()
    assert not is_up_to_date(out, "f", reads)


def test_mark_done_refuses_missing_outputs(tmp_path):
    with pytest.raises(RuntimeError, match="without writing"):
        mark_done(tmp_path, "s", "f", ("nothing.jsonl",))


@pytest.mark.parametrize("bad", ["../outside.json", "/etc/passwd", "a/../../b"])
def test_output_paths_cannot_escape_the_run_directory(tmp_path, bad):
    with pytest.raises(ConfigError, match="escapes the run directory"):
        inside_run_dir(tmp_path, bad, "run.log_file")


def test_output_paths_inside_are_resolved(tmp_path):
    assert inside_run_dir(tmp_path, "logs/run.log", "run.log_file") == (tmp_path / "logs" / "run.log").resolve()


def test_resume_skips_a_checkpoint_torn_by_a_kill(tmp_path):
    """A checkpoint folder whose trainer_state.json is missing or torn is never resumed from."""
    from stage1.train.callbacks import last_checkpoint

    assert last_checkpoint(tmp_path / "none") is None
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    (tmp_path / "checkpoint-8").mkdir()  # killed before the state was written
    (tmp_path / "checkpoint-12").mkdir()
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text('{"global_st')  # killed mid-write
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    (tmp_path / "checkpoint-16").mkdir()
    (tmp_path / "checkpoint-16" / "trainer_state.json").write_text('{"global_step": 16}')
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-16"


def test_only_the_main_process_of_a_distributed_launch_takes_the_lock(tmp_path, monkeypatch):
    """Under accelerate/torchrun all ranks run the same command; rank 0 holds the lock for them.
    ``RANK=1`` alone (left in a shell or set by a scheduler) used to skip the lock altogether."""
    with RunLock(tmp_path):
        monkeypatch.setenv("RANK", "1")
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        with pytest.raises(RunLockedError):
            with RunLock(tmp_path):
                pass
        for world in ("1", "abc", ""):
            monkeypatch.setenv("WORLD_SIZE", world)
            with pytest.raises(RunLockedError):
                with RunLock(tmp_path):
                    pass
        monkeypatch.setenv("WORLD_SIZE", "2")
        with RunLock(tmp_path):  # a worker rank does not contend with its own main process
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunLockedError):
            with RunLock(tmp_path):
                pass


@pytest.mark.parametrize(
    ("force", "only", "unknown", "guess"),
    [(("sfx",), None, "sfx", "sft"), (("merged",), None, "merged", "merge"), (("sft", "dpo-only"), None, "dpo-only", "dpo_only"),
     ((), ("sft", "nope"), "nope", None)],
)
def test_an_unknown_stage_name_is_refused_before_anything_is_written(tmp_path, force, only, unknown, guess):
    """A typo in --force used to exit 0 and rerun nothing; it is a ConfigError (exit 2) naming every stage."""
    from stage1.pipeline import STAGE_NAMES, run_pipeline
    from stage1.stages.config import load_config

    with pytest.raises(ConfigError) as error:
        run_pipeline(load_config(None), tmp_path / "run", force=force, only=only)
    assert error.value.exit_code == EXIT_INPUT
    assert f"unknown stage {unknown!r}" in str(error.value) and all(name in error.value.hint for name in STAGE_NAMES)
    assert (f"did you mean {guess!r}" in error.value.hint) if guess else "did you mean" not in error.value.hint
    assert not (tmp_path / "run").exists()


def test_each_stage_is_told_its_fingerprint_and_whether_it_was_forced(tmp_path, monkeypatch):
    """Training stages resume only from checkpoints written under the fingerprint the pipeline
    hands them, and start over when forced; the fingerprint is the one stage.json records."""
    from stage1 import pipeline
    from stage1.stages.config import load_config

    calls: list[tuple[str, pipeline.StageRun]] = []

    def step(name: str, upstream: tuple[str, ...]) -> pipeline.Step:
        def action(run: pipeline.StageRun) -> None:
            calls.append((name, run))
            (tmp_path / name / "out.txt").write_text(name)

        (tmp_path / name).mkdir(exist_ok=True)
        return pipeline.Step(name, tmp_path / name, ("out.txt",), {"x": 1}, upstream, {}, action)

    monkeypatch.setattr(pipeline, "build_steps", lambda *args: [step("sft_data", ()), step("sft", ("sft_data",))])
    config = load_config(None)
    pipeline.run_pipeline(config, tmp_path, force=("sft",))
    assert [(name, run.forced) for name, run in calls] == [("sft_data", False), ("sft", True)]
    for name, run in calls:
        assert run.fingerprint == read_stage_record(tmp_path / name).fingerprint
    assert calls[1][1].fingerprint == fingerprint("sft", {"x": 1}, {})
    calls.clear()
    pipeline.run_pipeline(config, tmp_path)
    assert calls == []
    pipeline.run_pipeline(config, tmp_path, force=("all",))
    assert [(name, run.forced) for name, run in calls] == [("sft_data", True), ("sft", True)]


def test_stage_names_are_the_steps_the_pipeline_builds(tmp_path):
    """``STAGE_NAMES`` is checked before any step exists; it must list exactly the built steps."""
    from stage1.pipeline import STAGE_NAMES, build_steps
    from stage1.stages.config import load_config

    arms = ("dpo_rules", "dpo_policy")
    every = ["negatives.source=mixed", "training.dpo_arms=[rules,policy]", "training.seeds=[0, 1]"]
    mixed = build_steps(load_config(None, every), tmp_path / "run")
    # mixed negatives, both DPO arms and two seeds build every stage (a further seed's steps run the seeded stages again)
    assert tuple(dict.fromkeys(step.stage for step in mixed)) == STAGE_NAMES
    assert {step.stage for step in mixed if step.name != step.stage} == {"sft", "merge", "dpo", "dpo_only", *arms, "eval"}
    default = tuple(step.name for step in build_steps(load_config(None, []), tmp_path / "run"))
    assert default == tuple(name for name in STAGE_NAMES if name not in ("samples", *arms, "seeds"))  # rule-made negatives need no samples
    policy = tuple(step.name for step in build_steps(load_config(None, ["negatives.source=policy"]), tmp_path / "run"))
    assert policy == tuple(name for name in STAGE_NAMES if name not in ("negatives", *arms, "seeds"))
    assert STAGE_NAMES.index("merge") < STAGE_NAMES.index("samples") < STAGE_NAMES.index("pairs")


def test_stage_fingerprints_do_not_depend_on_where_the_settings_classes_live(tmp_path, monkeypatch):
    """Regrouping the package must not make old run directories stale: a fingerprint hashes plain
    settings values, never a module path or a class name."""
    import dataclasses
    import json

    from stage1.config.typed import settings_to_dict
    from stage1.pipeline import build_steps
    from stage1.stages.config import load_config

    config = load_config(None)
    for step in build_steps(config, tmp_path / "run"):
        plain = json.dumps(settings_to_dict(step.settings), sort_keys=True, default=str)
        assert "stage1" not in plain and "Settings" not in plain, (step.name, plain[:200])
    import sys
    import types
    import typing

    training = config.training
    monkeypatch.setitem(sys.modules, "elsewhere_entirely", types.ModuleType("elsewhere_entirely"))
    hints = typing.get_type_hints(type(training))
    moved_class = dataclasses.make_dataclass(
        "Relocated", [(f.name, hints[f.name], dataclasses.field(default=f.default)) for f in dataclasses.fields(training)
                      if f.default is not dataclasses.MISSING], frozen=True, namespace={"__module__": "elsewhere_entirely"},
    )
    moved = moved_class(**{f.name: getattr(training, f.name) for f in dataclasses.fields(moved_class)})
    assert len(dataclasses.fields(moved)) == len(dataclasses.fields(training)), "every training setting has a default"
    assert fingerprint("sft", settings_to_dict({"training": moved}), {}) == fingerprint(
        "sft", settings_to_dict({"training": training}), {}
    )
