"""The recipe: every stage of ``stage1.stages.STAGES`` in order, each skipped when up to date, all
under one run-directory lock; and one stage alone on explicit files.

Each step names its inputs (upstream stages and external files), its settings, and the outputs it
must leave; ``stage1.io.run_dir`` decides whether it is up to date.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage1.config.load import PipelineConfig, dump_config
from stage1.config.typed import settings_to_dict
from stage1.core.errors import ConfigError
from stage1.io.atomic import atomic_write_json, atomic_write_text
from stage1.io.layout import RunLayout
from stage1.io.run_dir import RunLock, fingerprint, inside_run_dir, is_up_to_date, mark_done, read_stage_record
from stage1.stages import STAGE_NAMES, STAGES, STAGES_BY_NAME, StageCall, StageRun, StageSpec, check_stage_inputs

log = logging.getLogger("stage1")


@dataclass(frozen=True)
class Step:
    """One stage of a run: what it reads, what it writes, and how to run it."""

    name: str
    out_dir: Path
    outputs: tuple[str, ...]
    settings: Any
    upstream: tuple[str, ...]
    external: dict[str, Path]
    action: Callable[[StageRun], Any]


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran", "up to date", "disabled"
    seconds: float = 0.0
    result: Any = None


@dataclass
class RunReport:
    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)


def _external(path: Path, label: str) -> Path:
    if not path.exists():
        raise ConfigError("input file not found", path=path, field=f"data.{label}", hint="check the path in the config")
    return path


def step_for(spec: StageSpec, config: PipelineConfig, layout: RunLayout, built: Iterable[str], callbacks: tuple = ()) -> Step:
    """The step that runs ``spec`` inside the run directory ``layout``.

    Args:
        built: the stages that are part of this run (an upstream stage that is not, such as ``model``
            under a ``model.path``, is left out of the fingerprint).
    """
    built = set(built)
    inputs = {item.name: item.in_run(layout, config) for item in spec.inputs}
    external = {item.name: _external(inputs[item.name], item.name) for item in spec.inputs if item.is_external(config)}
    named = [item.stage for item in spec.inputs if item.stage] + list(spec.upstream)
    upstream = tuple(dict.fromkeys(name for name in named if name in built and name != spec.name))
    out_dir = layout.stage_dir(spec.name)

    def action(run: StageRun) -> Any:
        return spec.entry(StageCall(config, inputs, out_dir, run, callbacks))

    return Step(spec.name, out_dir, spec.outputs, spec.settings(config), upstream, external, action)


def build_steps(config: PipelineConfig, run_dir: Path, callbacks: tuple = ()) -> list[Step]:
    """The whole pipeline as steps, from ``STAGES``. Stage modules are imported when a step runs."""
    layout = RunLayout(run_dir, config.model.path)
    enabled = [spec for spec in STAGES if spec.enabled(config)]
    built = [spec.name for spec in enabled]
    return [step_for(spec, config, layout, built, callbacks) for spec in enabled]


def preflight(config: PipelineConfig) -> None:
    """Read every input file the run needs before any stage starts, so bad input stops the run
    (naming file, line and field) before a model is built or anything is written.

    Raises:
        InputError, ConfigError: as the stages' own readers would, only earlier.
    """
    from stage1.core.records import BadRows
    from stage1.io.records import read_eval_items
    from stage1.sft_data.stage import _read_sources

    data = config.data
    exemplars = Path(data.exemplars) if Path(data.exemplars).exists() else None
    _read_sources(config.sft_data, Path(data.instructions), exemplars, config.run.on_bad_rows, BadRows())
    read_eval_items(Path(data.eval_items))


def run_pipeline(
    config: PipelineConfig,
    run_dir: Path,
    *,
    only: tuple[str, ...] | None = None,
    force: tuple[str, ...] = (),
    on_stage: Callable[[str, str], None] | None = None,
    callbacks: tuple = (),
) -> RunReport:
    """Run every step (or ``only`` those) in order under the run lock, skipping up-to-date ones.

    Args:
        force: stage names to rerun even when up to date ("all" for every stage); a forced
            training stage starts over instead of resuming from its checkpoints.
        on_stage: called with (stage, "start" | "skip" | "done") for display.
        callbacks: TrainerCallbacks added to the SFT and DPO trainers (progress display).

    Raises:
        ConfigError: ``force`` or ``only`` names a stage that does not exist (before anything is written).
    """
    import time

    check_stage_names(force, field="--force", allowed=(*STAGE_NAMES, "all"))
    check_stage_names(only or (), field="only", allowed=STAGE_NAMES)
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir, config.model.path)
    report = RunReport(run_dir)
    with RunLock(run_dir):
        inside_run_dir(run_dir, config.run.log_file, "run.log_file")
        atomic_write_text(layout.config_file, dump_config(config))
        fingerprints: dict[str, str] = {}
        for step in build_steps(config, run_dir, callbacks):
            upstream = {name: fingerprints.get(name) or _recorded_fingerprint(layout, name) for name in step.upstream}
            expected = fingerprint(step.name, settings_to_dict(step.settings), upstream, step.external)
            fingerprints[step.name] = expected
            if only is not None and step.name not in only:
                continue
            forced = "all" in force or step.name in force
            if not forced and is_up_to_date(step.out_dir, expected):
                report.outcomes.append(StageOutcome(step.name, "up to date"))
                if on_stage:
                    on_stage(step.name, "skip")
                continue
            if on_stage:
                on_stage(step.name, "start")
            log.info("stage %s: running", step.name)
            started = time.perf_counter()
            result = step.action(StageRun(expected, forced))
            mark_done(step.out_dir, step.name, expected, step.outputs)
            report.outcomes.append(StageOutcome(step.name, "ran", time.perf_counter() - started, result))
            _record_timing(layout, step.name, time.perf_counter() - started)
            log.info("stage %s: done in %.1f s", step.name, time.perf_counter() - started)
            if on_stage:
                on_stage(step.name, "done")
    return report


def check_stage_names(names: tuple[str, ...], *, field: str, allowed: tuple[str, ...]) -> None:
    """Refuse a stage name that is not one of ``allowed``: a typo would otherwise rerun nothing.

    Raises:
        ConfigError: naming the unknown stage, the closest valid name, and every valid name.
    """
    for name in names:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown stage {name!r}", field=field, hint=f"{guess}stages are {', '.join(allowed)}")


def _record_timing(layout: RunLayout, stage: str, seconds: float) -> None:
    """Append the stage's wall time and the process's peak memory so far to ``timings.json``."""
    import json
    import resource

    path = layout.timings
    timings = json.loads(path.read_text()) if path.exists() else {}
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    timings[stage] = {"seconds": round(seconds, 2), "peak_rss_mib": round(max(own, children) / 1024, 1)}
    atomic_write_json(path, timings)


def _recorded_fingerprint(layout: RunLayout, name: str) -> str:
    """An upstream stage not run in this invocation: its recorded fingerprint, or 'missing'."""
    record = read_stage_record(layout.stage_dir(name))
    return record.fingerprint if record else "missing"


def run_stage_on_files(stage: str, config: PipelineConfig, inputs: dict[str, Path], out_dir: Path) -> Any:
    """Call the stage's entry point with these files; the stage writes into ``out_dir``.

    Raises:
        ConfigError: an input name the stage does not read, or a required one missing.
    """
    check_stage_inputs(stage, inputs)
    return STAGES_BY_NAME[stage].entry(StageCall(config, dict(inputs), Path(out_dir)))
