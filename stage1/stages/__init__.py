"""The table of stages: what each stage reads, writes and is configured by, and how it is started.

``STAGES`` is the only place a stage is wired: its name, the CLI command that runs it alone, the
inputs it reads (named for ``--in NAME=PATH``, and where each lies in a run directory), the outputs
it must leave, the settings its fingerprint covers, and its entry point. ``stage1.pipeline`` (the
``run`` command, a stage inside a run directory, a stage on explicit files, the preflight) and the
CLI (its subcommands, their ``--help`` and ``--in`` checks) all read it. The stage functions live in
their folders; each entry point only hands them their files. Light to import: stage modules are
imported when a stage runs, so ``--help`` stays instant.

- ``spec``: what a stage declares (``StageSpec``, ``StageInput``) and what its entry point is handed
  (``StageCall``, ``StageRun``);
- ``entries``: the entry points, one per stage;
- ``table``: ``STAGES`` in run order, the lookups derived from it, and the ``--in`` checks.
"""

from stage1.stages.spec import ON_FILES, StageCall, StageInput, StageRun, StageSpec
from stage1.stages.table import (
    BASE_MODEL,
    DPO_INPUTS,
    EVAL_ITEMS,
    PAIR_FILES,
    STAGE_COMMANDS,
    STAGE_NAMES,
    STAGES,
    STAGES_BY_NAME,
    check_stage_inputs,
    former_settings,
    inputs_help,
)

__all__ = [
    "BASE_MODEL",
    "DPO_INPUTS",
    "EVAL_ITEMS",
    "ON_FILES",
    "PAIR_FILES",
    "STAGES",
    "STAGES_BY_NAME",
    "STAGE_COMMANDS",
    "STAGE_NAMES",
    "StageCall",
    "StageInput",
    "StageRun",
    "StageSpec",
    "check_stage_inputs",
    "former_settings",
    "inputs_help",
]
