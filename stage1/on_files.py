"""One stage alone on explicit files (``stage1 negatives --in sft=FILE --out DIR``): its inputs read
as strictly as ``run`` reads its own, its output folder checked, and written under the lock of the
run the folder lies in, if any."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stage1.io.run_dir import check_out_dir
from stage1.io.run_lock import is_worker_rank, lock_for_output
from stage1.io.stage_spec import StageCall
from stage1.io.temps import remove_stale_siblings, remove_stale_temps
from stage1.stages import STAGES_BY_NAME, check_stage_inputs
from stage1.stages.config import PipelineConfig


def check_stage_on_files(stage: str, inputs: dict[str, Path], out_dir: Path) -> None:
    """Everything ``run_stage_on_files`` checks before it writes.

    Raises:
        ConfigError: an input name the stage does not read, a required one missing, or an output
            folder that would overwrite an input (see ``check_out_dir``).
    """
    check_stage_inputs(stage, inputs)
    check_out_dir(Path(out_dir), inputs.values())


def run_stage_on_files(stage: str, config: PipelineConfig, inputs: dict[str, Path], out_dir: Path) -> Any:
    """Call the stage's entry point with these files; the stage writes into ``out_dir``.

    An ``out_dir`` inside a run directory is written under that run's lock, like any other writer
    of the run; the run's next ``run`` sees the changed files against its records and rebuilds them.

    Raises:
        ConfigError: see ``check_stage_on_files``.
        RunLockedError: ``out_dir`` lies in a run directory another process holds.
    """
    check_stage_on_files(stage, inputs, out_dir)
    check_input_files(stage, inputs, config.run.on_bad_rows)
    call = StageCall(config, dict(inputs), Path(out_dir))
    with lock_for_output(Path(out_dir)):
        if not is_worker_rank():
            remove_stale_temps(Path(out_dir))
            remove_stale_siblings(Path(out_dir))  # a model folder's temporary sibling
        return STAGES_BY_NAME[stage].entry(call)


#: (stage, --in name) -> the record type its rows are, read with that type's reader before the stage
#: starts (and before it loads a tokenizer or a model), as ``run``'s preflight reads its inputs.
INPUT_RECORDS: dict[tuple[str, str], str] = {
    ("sft", "train"): "SFTExample",
    ("negatives", "sft"): "SFTExample",
    ("pairs", "sft"): "SFTExample",
    ("pairs", "negatives"): "NegativeRecord",
    ("dpo", "train"): "PreferencePair",
    ("dpo", "eval"): "PreferencePair",
}


def check_input_files(stage: str, inputs: dict[str, Path], on_bad_rows: str = "stop") -> None:
    """Check a stage's ``--in`` files as strictly as ``run`` checks its own, before the stage starts:
    a ``model`` folder as ``model.path`` is checked at load, evaluation items with their own reader
    (the leakage gate alone reads only ids and instructions), record files with their record type's
    reader (``INPUT_RECORDS``; under ``run.on_bad_rows: skip`` a bad row is left for the stage to count).

    Raises:
        InputError: naming the ``--in`` (or the file and line) and what is wrong.
    """
    from stage1.core import records
    from stage1.core.errors import InputError
    from stage1.hf.models import model_folder_problem
    from stage1.io.records import read_eval_items, read_records

    if "model" in inputs:
        problem = model_folder_problem(Path(inputs["model"]))
        if problem is not None:
            message, hint = problem
            raise InputError(message, path=inputs["model"], field="--in model", hint=hint)
    if "eval_items" in inputs:
        read_eval_items(Path(inputs["eval_items"]))
    for name, path in inputs.items():
        record = INPUT_RECORDS.get((stage, name))
        if record is not None:
            read_records(Path(path), getattr(records, record), on_bad_rows=on_bad_rows, bad_rows=records.BadRows())
