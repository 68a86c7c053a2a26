"""The recipe: every stage in order, each skipped when up to date, all under one run-directory lock.

Each step names its inputs (upstream stages and external files), its settings, and the outputs it
must leave; ``run_dir`` decides whether it is up to date. The stage functions themselves live in
their modules and only read and write files.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage1.config import PipelineConfig, dump_config
from stage1.errors import ConfigError
from stage1.run_dir import RunLock, fingerprint, inside_run_dir, is_up_to_date, mark_done, read_stage_record
from stage1.settings import settings_to_dict
from stage1.storage import atomic_write_json, atomic_write_text

log = logging.getLogger("stage1")

# Every stage writes its manifest last (after weights, which at 32B are several shards), so the
# manifest is the one output whose presence proves the stage finished.
MANIFEST = "manifest.json"

#: Every stage name, in run order; ``--force`` and ``only`` name stages from this list.
STAGE_NAMES = ("model", "sft_data", "sft", "merge", "negatives", "pairs", "dpo", "dpo_only", "eval")


@dataclass(frozen=True)
class StageRun:
    """What ``run_pipeline`` tells a step about this run of it.

    Attributes:
        fingerprint: the stage's fingerprint; training stages resume only from checkpoints written
            under the same one (same settings, same upstream stages, same input files).
        forced: named in ``--force``: start over rather than resume.
    """

    fingerprint: str
    forced: bool


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


class Paths:
    """Where every stage of one run reads and writes."""

    def __init__(self, run_dir: Path, config: PipelineConfig):
        self.run_dir = Path(run_dir)
        self.config = config

    @property
    def model(self) -> Path:
        return Path(self.config.model.path) if self.config.model.path else self.run_dir / "model"

    def stage(self, name: str) -> Path:
        return self.run_dir / name

    @property
    def merged(self) -> Path:
        return self.run_dir / "merged"


def _external(path: str, label: str) -> Path:
    resolved = Path(path)
    if not resolved.exists():
        raise ConfigError("input file not found", path=resolved, field=f"data.{label}", hint="check the path in the config")
    return resolved


def build_steps(config: PipelineConfig, run_dir: Path, callbacks: tuple = ()) -> list[Step]:
    """The whole pipeline as steps. Imports of stage modules happen when a step runs."""
    paths = Paths(run_dir, config)
    seed = config.run.seed
    training = config.section("training")
    data = config.data
    steps: list[Step] = []

    if config.model.path is None:

        def build_model(_: StageRun) -> Any:
            from stage1.tiny import build_tiny_qwen

            return build_tiny_qwen(paths.model, seed=config.model.tiny_seed)

        steps.append(Step("model", paths.model, ("model.safetensors", "tokenizer.json"), {"tiny_seed": config.model.tiny_seed}, (), {}, build_model))

    def sft_data(_: StageRun) -> Any:
        from stage1.sft_data import run_sft_data

        return run_sft_data(
            config.section("sft_data"),
            instructions_path=Path(data.instructions),
            out_dir=paths.stage("sft_data"),
            model_dir=paths.model,
            exemplars_path=Path(data.exemplars),
            eval_items_path=Path(data.eval_items),
            on_bad_rows=config.run.on_bad_rows,
            backend=config.run.generation_backend,
        )

    external = {"instructions": _external(data.instructions, "instructions"), "eval_items": _external(data.eval_items, "eval_items")}
    if getattr(config.section("sft_data"), "source", "file") == "model":
        external["exemplars"] = _external(data.exemplars, "exemplars")
    model_upstream = ("model",) if config.model.path is None else ()
    steps.append(Step("sft_data", paths.stage("sft_data"), ("train.jsonl", "heldout.jsonl", MANIFEST), config.section("sft_data"), model_upstream, external, sft_data))

    def train_sft(run: StageRun) -> Any:
        from stage1.train_sft import run_train_sft

        return run_train_sft(
            training,
            model_dir=paths.model,
            train_path=paths.stage("sft_data") / "train.jsonl",
            out_dir=paths.stage("sft"),
            sft_args=dict(config.sft),
            lora_args=dict(config.lora),
            seed=seed,
            resume=not run.forced,
            stage_fingerprint=run.fingerprint,
            callbacks=callbacks,
        )

    train_settings = {"training": training, "sft": config.sft, "lora": config.lora, "seed": seed}
    steps.append(Step("sft", paths.stage("sft"), ("adapter", MANIFEST), train_settings, (*model_upstream, "sft_data"), {}, train_sft))

    keep_adapter = getattr(training, "sft_handoff", "merge") == "adapter"
    eval_dtype = config.section("eval").dtype

    def merge(_: StageRun) -> Any:
        from stage1.merge import run_handoff, run_merge

        handoff = run_handoff if keep_adapter else run_merge
        return handoff(training, model_dir=paths.model, adapter_dir=paths.stage("sft") / "adapter", out_dir=paths.merged,
                       sft_train_path=paths.stage("sft_data") / "train.jsonl", eval_dtype=eval_dtype)

    merge_outputs = ("fidelity.json", MANIFEST) if keep_adapter else ("config.json", MANIFEST)
    steps.append(Step("merge", paths.merged, merge_outputs, {"training": training, "eval_dtype": eval_dtype}, (*model_upstream, "sft", "sft_data"), {}, merge))

    def negatives(_: StageRun) -> Any:
        from stage1.negatives import run_negatives

        return run_negatives(config.section("negatives"), sft_path=paths.stage("sft_data") / "train.jsonl", out_dir=paths.stage("negatives"))

    steps.append(Step("negatives", paths.stage("negatives"), ("negatives.jsonl", MANIFEST), {"negatives": config.section("negatives"), "seed": seed}, ("sft_data",), {}, negatives))

    def pairs(_: StageRun) -> Any:
        from stage1.pairs import run_pairs

        return run_pairs(
            config.section("pairs"),
            sft_path=paths.stage("sft_data") / "train.jsonl",
            negatives_path=paths.stage("negatives") / "negatives.jsonl",
            out_dir=paths.stage("pairs"),
            tokenizer_dir=paths.model,
            eval_items_path=Path(data.eval_items),
        )

    steps.append(Step("pairs", paths.stage("pairs"), ("train.jsonl", "eval.jsonl", MANIFEST), config.section("pairs"), ("sft_data", "negatives"), {"eval_items": external["eval_items"]}, pairs))

    def dpo_on(model_dir: Path, name: str, sft_adapter_dir: Path | None = None) -> Callable[[StageRun], Any]:
        def action(run: StageRun) -> Any:
            from stage1.train_dpo import run_train_dpo

            return run_train_dpo(
                training,
                model_dir=model_dir,
                train_path=paths.stage("pairs") / "train.jsonl",
                eval_path=paths.stage("pairs") / "eval.jsonl",
                out_dir=paths.stage(name),
                dpo_args=dict(config.dpo),
                lora_args=dict(config.lora),
                seed=seed,
                resume=not run.forced,
                stage_fingerprint=run.fingerprint,
                callbacks=callbacks,
                sft_adapter_dir=sft_adapter_dir,
            )

        return action

    dpo_settings = {"training": training, "dpo": config.dpo, "lora": config.lora, "seed": seed}
    dpo_chain = dpo_on(paths.model, "dpo", paths.stage("sft") / "adapter") if keep_adapter else dpo_on(paths.merged, "dpo")
    steps.append(Step("dpo", paths.stage("dpo"), ("adapter", MANIFEST), dpo_settings, ("merge", "pairs"), {}, dpo_chain))
    if getattr(training, "dpo_only", True):
        steps.append(Step("dpo_only", paths.stage("dpo_only"), ("adapter", MANIFEST), dpo_settings, (*model_upstream, "pairs"), {}, dpo_on(paths.model, "dpo_only")))

    def evaluate(_: StageRun) -> Any:
        from stage1.evaluate import run_evaluate

        return run_evaluate(
            config.section("eval"),
            variants=variant_specs(paths, config),
            items_path=Path(data.eval_items),
            out_dir=paths.stage("eval"),
            training_paths=[paths.stage("sft_data") / "train.jsonl", paths.stage("pairs") / "train.jsonl"],
        )

    eval_upstream = tuple(s.name for s in steps if s.name in ("model", "sft_data", "merge", "pairs", "dpo", "dpo_only"))
    steps.append(Step("eval", paths.stage("eval"), ("results.json", "report.md", "chart.png", MANIFEST), config.section("eval"), eval_upstream, {"eval_items": external["eval_items"]}, evaluate))
    return steps


def variant_specs(paths: Paths, config: PipelineConfig) -> list[Any]:
    """The models compared by evaluation, each built from files on disk."""
    from stage1.evaluate import VariantSpec

    training = config.section("training")
    quantization = getattr(training, "quantization", "none")
    if getattr(training, "sft_handoff", "merge") == "adapter":
        # The base as SFT held it, with the SFT adapter, or with DPO's continuation of it (SFT + DPO in one adapter).
        sft = VariantSpec("sft", paths.model, adapter_dir=paths.stage("sft") / "adapter", quantization=quantization)
        dpo = VariantSpec("dpo", paths.model, adapter_dir=paths.stage("dpo") / "adapter", quantization=quantization)
    else:
        sft = VariantSpec("sft", paths.merged, quantization=quantization)
        dpo = VariantSpec("dpo", paths.merged, adapter_dir=paths.stage("dpo") / "adapter", quantization=quantization)
    specs = [
        VariantSpec("base_raw", paths.model, use_format=False, quantization=quantization),
        VariantSpec("base", paths.model, quantization=quantization),
        sft,
        dpo,
    ]
    if (paths.stage("dpo_only") / "adapter").exists():
        specs.append(VariantSpec("dpo_only", paths.model, adapter_dir=paths.stage("dpo_only") / "adapter", quantization=quantization))
    return specs


def preflight(config: PipelineConfig) -> None:
    """Read every input file the run needs before any stage starts, so bad input stops the run
    (naming file, line and field) before a model is built or anything is written.

    Raises:
        InputError, ConfigError: as the stages' own readers would, only earlier.
    """
    from stage1.eval_items import read_eval_items
    from stage1.records import BadRows
    from stage1.sft_data import _read_sources

    data = config.data
    exemplars = Path(data.exemplars) if Path(data.exemplars).exists() else None
    _read_sources(config.section("sft_data"), Path(data.instructions), exemplars, config.run.on_bad_rows, BadRows())
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
    report = RunReport(run_dir)
    with RunLock(run_dir):
        inside_run_dir(run_dir, config.run.log_file, "run.log_file")
        atomic_write_text(run_dir / "config.yaml", dump_config(config))
        fingerprints: dict[str, str] = {}
        for step in build_steps(config, run_dir, callbacks):
            upstream = {name: fingerprints.get(name) or _recorded_fingerprint(run_dir, config, name) for name in step.upstream}
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
            _record_timing(run_dir, step.name, time.perf_counter() - started)
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


def _record_timing(run_dir: Path, stage: str, seconds: float) -> None:
    """Append the stage's wall time and the process's peak memory so far to ``timings.json``."""
    import json
    import resource

    path = Path(run_dir) / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    timings[stage] = {"seconds": round(seconds, 2), "peak_rss_mib": round(max(own, children) / 1024, 1)}
    atomic_write_json(path, timings)


def _recorded_fingerprint(run_dir: Path, config: PipelineConfig, name: str) -> str:
    """An upstream stage not run in this invocation: its recorded fingerprint, or 'missing'."""
    out_dir = Paths(run_dir, config).model if name == "model" else Path(run_dir) / ("merged" if name == "merge" else name)
    record = read_stage_record(out_dir)
    return record.fingerprint if record else "missing"
