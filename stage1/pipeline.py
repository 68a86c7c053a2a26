"""The recipe: every stage of ``stage1.stages.STAGES`` in order, each skipped when up to date, all
under one run-directory lock; and one stage alone on explicit files.

Each step names the files it reads, its settings, and the outputs it must leave;
``stage1.io.run_dir`` decides whether it is up to date (settings, the content of what it read, and
what it wrote, all as recorded in its ``stage.json``). A stage reruns when any of them changed, so a
rerun upstream stage whose files come out different reruns every stage that reads them.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.errors import ConfigError, StaleUpstreamError
from stage1.io.atomic import atomic_write_json, atomic_write_text
from stage1.io.layout import CONFIG_FILE, RunLayout
from stage1.io.plain import read_json
from stage1.io.run_dir import (
    NOT_READ,
    ContentHashes,
    RunLock,
    StageRecord,
    check_log_file,
    check_writable_folder,
    fingerprint,
    learn_record,
    legacy_fingerprint,
    mark_done,
    read_stage_record,
    stale_reason,
)
from stage1.io.run_lock import is_worker_rank
from stage1.io.settings_record import refuse_changed_settings
from stage1.io.stage_spec import StageCall, StageRun, StageSpec
from stage1.io.temps import remove_stale_temps
from stage1.stages import STAGE_NAMES
from stage1.stages.config import PipelineConfig, default_dump, dump_config
from stage1.stages.seeds import PlannedStage, planned_stages
from stage1.train.spec import former_settings

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
    #: the files and folders whose content the stage reads, by input name
    reads: dict[str, Path] = field(default_factory=dict)
    #: its settings as the previous release fingerprinted them (``train.spec.former_settings``), or None
    former: Any = None
    #: the table's stage it runs, which ``--force`` and ``only`` name too ("" = ``name``): a further
    #: training seed's step ``seed-1/sft`` runs ``sft``
    stage: str = ""

    def is_named(self, names: Iterable[str]) -> bool:
        """Whether ``names`` names this step or the stage it runs."""
        return self.name in names or (self.stage or self.name) in names


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran", "up to date", "adopted"
    seconds: float = 0.0
    result: Any = None
    reason: str = ""  # why it ran: the file that changed, "--force", new settings


@dataclass
class RunReport:
    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)


def _external(path: Path, label: str) -> Path:
    if not path.exists():
        raise ConfigError("input file not found", path=path, field=f"data.{label}", hint="check the path in the config")
    return path


def step_for(spec: StageSpec, config: PipelineConfig, layout: RunLayout, built: Iterable[str], callbacks: tuple = (),
             rename: Callable[[str], str] = str) -> Step:
    """The step that runs ``spec`` inside the run directory ``layout``.

    Args:
        built: the stages that are part of this run (an upstream stage that is not, such as ``model``
            under a ``model.path``, is left out of the fingerprint).
        rename: the step name of a stage as this step sees it (a further training seed's own steps:
            ``PlannedStage.rename``).
    """
    built = set(built)
    inputs = {item.name: item.in_run(layout, config) for item in spec.inputs}
    external = {item.name: _external(inputs[item.name], item.name) for item in spec.inputs if item.is_external(config)}
    named = [item.stage for item in spec.inputs if item.stage] + list(spec.upstream)
    upstream = tuple(dict.fromkeys(rename(name) for name in named if name in built and name != spec.name))
    out_dir = layout.stage_dir(spec.name)
    reads = {name: path for item in spec.inputs for name, path in item.reads(layout, config).items()}

    def action(run: StageRun) -> Any:
        return spec.entry(StageCall(config, inputs, out_dir, run, callbacks))

    name = rename(spec.name)
    return Step(name, out_dir, spec.outputs, spec.settings(config), upstream, external, action, reads,
                former_settings(spec.name, config) if name == spec.name else None, spec.name)


def build_steps(config: PipelineConfig, run_dir: Path, callbacks: tuple = (), planned: list[PlannedStage] | None = None) -> list[Step]:
    """The whole pipeline as steps, from ``STAGES`` (and each further training seed's, ``stages.seeds``);
    ``planned``: ``planned_stages`` of this config and run, when the caller has it already."""
    planned = planned_stages(config, RunLayout(run_dir, config.model.path)) if planned is None else planned
    built = [stage.spec.name for stage in planned]
    return [step_for(stage.spec, stage.config, stage.layout, built, callbacks, stage.rename) for stage in planned]


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
    on_stage: Callable[..., None] | None = None,
    callbacks: tuple = (),
    verify: bool = False,
    on_locked: Callable[[], None] | None = None,
    keep_settings: bool = False,
) -> RunReport:
    """Run every step (or ``only`` those) in order under the run lock, skipping up-to-date ones.

    Everything is checked before the first write (stage names, the run directory, the log file's
    place, the external inputs); only then is the lock taken and ``config.yaml`` written.

    Args:
        force: stage names to rerun even when up to date ("all" for every stage); a forced
            training stage starts over instead of resuming from its checkpoints.
        on_stage: called with (stage, "start" | "skip" | "adopted" | "done", reason) for display.
        callbacks: TrainerCallbacks added to the SFT and DPO trainers (progress display).
        verify: hash every file read and written again instead of trusting size and time.
        on_locked: called once the lock is held (the CLI opens the run's log file there).
        keep_settings: refuse settings that differ from those the run directory records in its
            ``config.yaml`` (the CLI, unless ``--force``): a command never retrains silently.

    Raises:
        ConfigError: ``force`` or ``only`` names a stage that does not exist, the run directory or
            the log file cannot be used, an external input is missing, a stage run alone has no run
            directory to read, or (``keep_settings``) the settings differ from the run's (all before
            anything is written).
    """
    run_dir = Path(run_dir)
    steps = _checked_steps(config, run_dir, only, force, callbacks)
    dumped = dump_config(config)
    if keep_settings:
        refuse_changed_settings(run_dir, dumped, default_dump())
    layout = RunLayout(run_dir, config.model.path)
    report = RunReport(run_dir)
    with RunLock(run_dir):
        hashes = ContentHashes(verify)
        if only is not None:
            _refuse_damaged_upstream(steps, only, hashes)  # read-only: a refused command writes nothing
        if not is_worker_rank():
            remove_stale_temps(run_dir, recursive=False)
        atomic_write_text(layout.config_file, dumped)
        if on_locked:
            on_locked()
        legacy: dict[str, str] = {}  # format-1 fingerprints of stages adopted in this run
        for step in steps:
            if only is None or step.is_named(only):
                report.outcomes.append(_run_step(step, layout, hashes, force, legacy, on_stage))
    return report


def _checked_steps(config: PipelineConfig, run_dir: Path, only: tuple[str, ...] | None, force: tuple[str, ...],
                   callbacks: tuple) -> list[Step]:
    """The run's steps, once everything that needs no lock is checked (nothing is created here)."""
    planned = planned_stages(config, RunLayout(run_dir, config.model.path))
    seed_steps = [stage.name for stage in planned if stage.prefix]
    check_stage_names(force, field="--force", allowed=(*STAGE_NAMES, "all", *seed_steps))
    check_stage_names(only or (), field="only", allowed=STAGE_NAMES)
    check_run_dir(run_dir)
    check_log_file(run_dir, config.run.log_file)
    steps = build_steps(config, run_dir, callbacks, planned)
    if only is not None:
        _refuse_missing_run_dir(steps, only, run_dir)
    return steps


def _run_step(
    step: Step, layout: RunLayout, hashes: ContentHashes, force: tuple[str, ...], legacy: dict[str, str],
    on_stage: Callable[..., None] | None,
) -> StageOutcome:
    """One step: its leftover temp files removed, then skipped when up to date, adopted, or run."""
    import time

    if layout.run_dir.resolve() in step.out_dir.resolve().parents and not is_worker_rank():  # never a model.path outside the run
        remove_stale_temps(step.out_dir)
    record = read_stage_record(step.out_dir)
    if record is not None:
        learn_record(hashes, record, step.out_dir, step.reads)
    reads = {name: hashes.snapshot(path, NOT_READ) for name, path in step.reads.items()}
    expected = fingerprint(step.name, settings_to_dict(step.settings), reads)
    forced = "all" in force or step.is_named(force)
    reason = "--force" if forced else stale_reason(step.out_dir, record, expected, reads, step.reads, hashes)
    if reason is not None and not forced and _adoptable(step, record, layout, legacy):
        legacy[step.name] = record.fingerprint
        mark_done(step.out_dir, step.name, expected, step.outputs, reads, hashes)
        log.info("stage %s: up to date (recorded by an older stage1; its files are hashed now)", step.name)
        _announce(on_stage, step.name, "adopted", "")
        return StageOutcome(step.name, "adopted", reason="recorded without file hashes: hashed now")
    if reason == "its settings changed" and not forced and _recorded_under_former_rule(step, record, reads):
        mark_done(step.out_dir, step.name, expected, step.outputs, reads, hashes)  # same settings, this release's fingerprint
        reason = None
    if reason is None:
        _announce(on_stage, step.name, "skip", "")
        return StageOutcome(step.name, "up to date")
    if reason == "recorded without file hashes":
        reason = "recorded by an older stage1 without file hashes, under other settings or inputs"
    _announce(on_stage, step.name, "start", reason)
    log.info("stage %s: running (%s)", step.name, reason)
    started = time.perf_counter()
    result = step.action(StageRun(expected, forced))
    mark_done(step.out_dir, step.name, expected, step.outputs, reads, hashes)
    seconds = time.perf_counter() - started
    _record_timing(layout, step.name, seconds)
    log.info("stage %s: done in %.1f s", step.name, seconds)
    _announce(on_stage, step.name, "done", reason)
    return StageOutcome(step.name, "ran", seconds, result, reason)


def _recorded_under_former_rule(step: Step, record: StageRecord, reads: dict) -> bool:
    """The stage's record is the previous release's fingerprint of these same settings and files."""
    return step.former is not None and record.fingerprint == fingerprint(step.name, settings_to_dict(step.former), reads)


def _needed_upstream(steps: list[Step], only: tuple[str, ...]) -> set[str]:
    """The stages of this run that the stages in ``only`` read from, directly or further up."""
    by_name = {step.name: step for step in steps}
    needed: set[str] = set()
    chosen = {step.name for step in steps if step.is_named(only)}
    pending = list(chosen)
    while pending:
        for upstream in by_name[pending.pop()].upstream:
            if upstream in by_name and upstream not in needed:
                needed.add(upstream)
                pending.append(upstream)
    return needed - chosen


def _refuse_missing_run_dir(steps: list[Step], only: tuple[str, ...], run_dir: Path) -> None:
    """A stage run alone on a run directory that does not exist reads nothing an upstream stage
    wrote: refused before the folder is created (``evaluate --run-dir TYPO`` used to create it and
    then fail its leakage gate).

    Raises:
        ConfigError: naming the folder and the command that builds it.
    """
    if not run_dir.exists() and _needed_upstream(steps, only):
        raise ConfigError(
            f"no such run directory: {_readers(steps, only)} reads what earlier stages wrote there", path=run_dir, field="--run-dir",
            hint=f"check the path, or build the run first with `python cli.py run --run-dir {run_dir}`",
        )


def _readers(steps: list[Step], only: tuple[str, ...]) -> str:
    """The stages of ``only`` this run has, for a message (``evaluate`` also names ``seeds``, which a
    run without ``training.seeds`` does not have)."""
    planned = {step.name for step in steps}
    return ", ".join(name for name in only if name in planned)


def _refuse_damaged_upstream(steps: list[Step], only: tuple[str, ...], hashes: ContentHashes) -> None:
    """A stage run alone must not read an upstream stage's files that changed since that stage
    wrote them (``evaluate`` after ``merged/model.safetensors`` was damaged would score the damage).

    An upstream stage that never ran, or was recorded by an older stage1, is left to the stage's
    own checks: only a recorded stage whose files or inputs changed is refused here.

    Raises:
        StaleUpstreamError: naming the upstream stage, the file, and the command that rebuilds it.
    """
    needed = _needed_upstream(steps, only)
    for step in steps:
        if step.name not in needed:
            continue
        record = read_stage_record(step.out_dir)
        if record is None or not record.has_file_hashes:
            continue
        learn_record(hashes, record, step.out_dir, step.reads)
        reads = {name: hashes.snapshot(path, NOT_READ) for name, path in step.reads.items()}
        expected = fingerprint(step.name, settings_to_dict(step.settings), reads)
        reason = stale_reason(step.out_dir, record, expected, reads, step.reads, hashes)
        if reason is not None:
            raise StaleUpstreamError(
                f"stage {step.name}, which {_readers(steps, only)} reads, is not up to date: {reason}",
                path=step.out_dir.parent,
                hint=f"rebuild it first, with the run's own settings: `stage1 run --run-dir {step.out_dir.parent} "
                     f"--config {step.out_dir.parent / CONFIG_FILE}`",
            )


def _announce(on_stage: Callable[..., None] | None, stage: str, event: str, reason: str) -> None:
    if on_stage:
        on_stage(stage, event, reason)


def _adoptable(step: Step, record: StageRecord | None, layout: RunLayout, legacy: dict[str, str]) -> bool:
    """A stage recorded by stage1 before file hashes (``stage.json`` format 1) whose fingerprint
    still matches under that format's rule, and whose outputs exist: it is kept, and its files are
    hashed now (retraining a 32B run because its records predate hashes would waste days)."""
    if record is None or record.has_file_hashes:
        return False
    if not all((step.out_dir / output).exists() for output in record.outputs):
        return False
    upstream = {name: legacy.get(name) or _recorded_fingerprint(layout, name) for name in step.upstream}
    try:
        expected = legacy_fingerprint(step.name, settings_to_dict(step.settings), upstream, step.external)
    except OSError:
        return False
    return record.fingerprint == expected


def check_run_dir(run_dir: Path, field: str = "--run-dir") -> None:
    """Refuse a run directory that is ``/``, a file, or under a file, before anything is created.

    Raises:
        ConfigError: naming the path and what is wrong with it.
    """
    check_writable_folder(run_dir, field, root_hint="give a folder of its own, e.g. runs/tiny", file_hint="give a folder for the run")


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
    import resource

    path = layout.timings
    timings = read_json(path) if path.exists() else {}
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    timings[stage] = {"seconds": round(seconds, 2), "peak_rss_mib": round(max(own, children) / 1024, 1)}
    atomic_write_json(path, timings)


def _recorded_fingerprint(layout: RunLayout, name: str) -> str:
    """An upstream stage not run in this invocation: its recorded fingerprint, or 'missing'."""
    record = read_stage_record(layout.stage_dir(name))
    return record.fingerprint if record else "missing"


# A stage on explicit files lives in stage1.on_files; these names are kept here for callers of the pipeline module.
from stage1.on_files import INPUT_RECORDS, check_input_files, check_stage_on_files, run_stage_on_files  # noqa: E402, F401
