"""The table of stages, in run order, and the ``--in`` checks and help read from it.

Each stage declares itself in its folder's ``spec.py`` (its name, command, inputs, outputs, settings,
entry point); this table only puts the declarations in run order.
"""

from __future__ import annotations

from collections.abc import Iterable

from stage1.core.errors import ConfigError
from stage1.eval import spec as eval_spec
from stage1.io.stage_spec import EVAL_ITEMS, StageSpec
from stage1.negatives import spec as negatives_spec
from stage1.organism import spec as model_spec
from stage1.pairs import spec as pairs_spec
from stage1.samples import spec as samples_spec
from stage1.sft_data import spec as sft_data_spec
from stage1.train import spec as train_spec

STAGES: tuple[StageSpec, ...] = (
    *model_spec.STAGES,
    *sft_data_spec.STAGES,
    *train_spec.SFT_STAGES,
    *negatives_spec.STAGES,
    *samples_spec.STAGES,
    *pairs_spec.STAGES,
    *train_spec.DPO_STAGES,
    *eval_spec.STAGES,
)
STAGES_BY_NAME = {spec.name: spec for spec in STAGES}
#: Every stage name, in run order; ``--force`` and ``only`` name stages from this list.
STAGE_NAMES = tuple(spec.name for spec in STAGES)
#: CLI subcommand -> stage.
STAGE_COMMANDS = {spec.command: spec.name for spec in STAGES if spec.command}


# ---------------------------------------------------------------- --in names


def inputs_help(stage: str) -> str:
    """The ``--in`` names a stage reads, one line each, for its ``--help``."""
    spec = STAGES_BY_NAME[stage]
    lines = [f"  --in {item.name}=PATH  {'(required)' if item.required else '(optional)'} {item.help}" for item in spec.inputs]
    return "inputs (with --out, the stage runs on these files instead of a run directory):\n" + "\n".join(lines)


def check_stage_inputs(stage: str, names: Iterable[str]) -> None:
    """Refuse input names the stage does not read, and missing required ones.

    Raises:
        ConfigError: naming the unknown or missing names and every name the stage takes.
    """
    spec = STAGES_BY_NAME[stage]
    required, optional = spec.required_inputs, spec.optional_inputs
    takes = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
    given = list(names)
    unknown = [name for name in given if name not in required + optional]
    if unknown:
        raise ConfigError(f"this stage reads no input named {', '.join(map(repr, unknown))}", field="--in", hint=f"it takes: {takes}")
    missing = [name for name in required if name not in given]
    if missing:
        hint = f"this stage reads: {takes}"
        if "eval_items" in missing:
            hint += f"; eval_items are the {EVAL_ITEMS.help}"
        raise ConfigError(f"missing --in for {', '.join(missing)}", field="--in", hint=hint)
