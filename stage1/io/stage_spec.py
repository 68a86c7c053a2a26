"""What a stage declares: the inputs it reads, the outputs it leaves, the settings its fingerprint
covers, its entry point, and what an entry point is handed (``StageCall``); and the one input several
stages read that no stage makes (``EVAL_ITEMS``).

Each stage's folder declares its stages with these in its ``spec.py`` (``stage1/negatives/spec.py``);
the table of stages (``stage1.stages.table``) lists them in run order. They live here, below the stage
folders, so that a stage's ``spec.py`` need not import ``stage1.stages`` (which imports every stage
folder). The config they are handed is ``stage1.stages.config.PipelineConfig``, named for type checkers
only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stage1.io.layout import RunLayout

if TYPE_CHECKING:  # the stages' config, assembled above the stage folders from their sections
    from stage1.stages.config import PipelineConfig


@dataclass(frozen=True)
class StageRun:
    """What ``run_pipeline`` tells a step about this run of it.

    Attributes:
        fingerprint: the stage's fingerprint; training stages resume only from checkpoints written
            under the same one (same settings, same upstream stages, same input files).
        forced: named in ``--force``: start over rather than resume.
    """

    fingerprint: str | None
    forced: bool


#: A stage run alone on explicit files: no fingerprint to resume under, nothing forced.
ON_FILES = StageRun(fingerprint=None, forced=False)


@dataclass(frozen=True)
class StageCall:
    """Everything a stage's entry point is given: the config, its named inputs and its output folder."""

    config: PipelineConfig
    inputs: dict[str, Path]
    out_dir: Path
    run: StageRun = ON_FILES
    callbacks: tuple = ()


@dataclass(frozen=True)
class StageInput:
    """One input a stage reads.

    Attributes:
        name: the ``--in NAME=PATH`` name.
        help: one line on what it is, for ``--help`` and errors.
        required: whether a run on files must give it.
        in_run: where it lies in a run: the layout and the config give its path.
        stage: the stage that produces it in a run (its fingerprint then covers that stage's).
        external: a file the user owns (named in the config); a predicate on the config where only
            some settings read it.
        read: whether the stage reads it with this config (a predicate where only some settings
            do); the content of every input read is part of the stage's fingerprint.
        parts: for an input that stands for several files of a run (``evaluate``'s ``run``), the
            files and folders the stage reads from it, by name.
    """

    name: str
    help: str
    in_run: Callable[[RunLayout, PipelineConfig], Path]
    required: bool = True
    stage: str | None = None
    external: bool | Callable[[PipelineConfig], bool] = False
    read: bool | Callable[[PipelineConfig], bool] = True
    parts: Callable[[RunLayout, PipelineConfig], dict[str, Path]] | None = None

    def is_external(self, config: PipelineConfig) -> bool:
        return self.external(config) if callable(self.external) else bool(self.external)

    def reads(self, layout: RunLayout, config: PipelineConfig) -> dict[str, Path]:
        """The files (or folders) whose content the stage reads through this input in a run, by name."""
        if not (self.read(config) if callable(self.read) else self.read):
            return {}
        if self.parts is not None:
            return {f"{self.name}/{part}": path for part, path in self.parts(layout, config).items()}
        return {self.name: self.in_run(layout, config)}


@dataclass(frozen=True)
class StageSpec:
    """One stage of the table (see the module docstring).

    Attributes:
        upstream: stages whose fingerprints this one's covers, beyond those its inputs name (a stage
            that is not built in this run, such as ``model`` under a ``model.path``, is left out).
        also: stages its command also runs inside a run directory (``train-dpo`` trains ``dpo_only`` and the DPO arms too).
        enabled: whether the stage is part of a run with this config.
    """

    name: str
    command: str | None
    help: str
    outputs: tuple[str, ...]
    inputs: tuple[StageInput, ...]
    settings: Callable[[PipelineConfig], Any]
    entry: Callable[[StageCall], Any]
    upstream: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    enabled: Callable[[PipelineConfig], bool] = field(default=lambda config: True)

    @property
    def required_inputs(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs if spec.required)

    @property
    def optional_inputs(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs if not spec.required)


def data_file(key: str) -> Callable[[RunLayout, PipelineConfig], Path]:
    """Where a file the user owns lies: the ``data.<key>`` setting."""
    return lambda layout, config: Path(getattr(config.data, key))


EVAL_ITEMS = StageInput(
    "eval_items", "held-out evaluation items (the shipped ones: --in eval_items=items): the leakage gate checks against them",
    data_file("eval_items"), external=True,
)
