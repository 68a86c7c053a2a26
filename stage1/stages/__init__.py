"""The table of stages: what each stage reads, writes and is configured by, and how it is started.

Each stage declares itself in its folder's ``spec.py`` (``stage1/negatives/spec.py``; ``train/`` and
``eval/`` declare several): its name, the CLI command that runs it alone, the inputs it reads (named
for ``--in NAME=PATH``, and where each lies in a run directory), the outputs it must leave, the
settings its fingerprint covers, and its entry point, which hands the stage function its files.
``STAGES`` puts them in run order; ``stage1.pipeline`` (the ``run`` command, a stage inside a run
directory, a stage on explicit files, the preflight) and the CLI (its subcommands, their ``--help``
and ``--in`` checks) all read it. Light to import: the stage modules that import torch are imported
when their stage runs, so ``--help`` stays quick.

- ``config``: the schema assembled from the stages' sections, ``PipelineConfig``, ``load_config``;
- ``table``: ``STAGES`` in run order, the lookups derived from it, and the ``--in`` checks;
- ``seeds``: the stages a run trains and evaluates once per training seed.

The declaration types (``StageSpec``, ``StageInput``, ``StageCall``, ``StageRun``) live below the
stage folders, in ``stage1.io.stage_spec``.
"""

from stage1.stages.table import STAGE_COMMANDS, STAGE_NAMES, STAGES, STAGES_BY_NAME, check_stage_inputs, inputs_help

__all__ = ["STAGES", "STAGES_BY_NAME", "STAGE_COMMANDS", "STAGE_NAMES", "check_stage_inputs", "inputs_help"]
