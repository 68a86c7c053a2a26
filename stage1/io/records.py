"""One reader per record type: every row validated where it is read, errors naming file, line and field.

The record classes themselves (``stage1.core.records``, ``stage1.core.eval_items``) are pure; these
functions read them from files through the strict readers of ``stage1.io.readers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stage1.core.errors import InputError, MissingEvidenceError
from stage1.core.eval_items import EvalItem
from stage1.core.format import FormatError, check_text, instruction_from_prompt
from stage1.core.leakage import Leak, LeakageSettings, find_leaks, gate_leaks
from stage1.core.records import BadRows, R, RecordError, RecordList, check_unique_ids
from stage1.io.readers import iter_rows


def read_records(
    path: str | Path,
    parse: type[R] | Callable[[dict[str, Any]], R],
    *,
    on_bad_rows: str = "stop",
    bad_rows: BadRows | None = None,
) -> RecordList:
    """Read and validate every row of ``path`` with ``parse`` (a record class or a function).

    Args:
        on_bad_rows: ``"stop"`` raises on the first bad row; ``"skip"`` counts it in ``bad_rows``.

    Returns:
        The records (a list) with ``.lines``, the line of each in the file, for later messages.

    Raises:
        InputError: naming the file, line and field (also for unreadable files under "skip").
    """
    if on_bad_rows not in ("stop", "skip"):
        raise ValueError(f"on_bad_rows must be 'stop' or 'skip', got {on_bad_rows!r}")
    parser = parse.from_dict if isinstance(parse, type) else parse
    records = RecordList()
    for line, row in iter_rows(path):
        try:
            records.append(parser(row))
        except RecordError as error:
            failure = InputError(error.message, path=path, line=line, field=error.field, hint=error.hint)
            if on_bad_rows == "stop":
                raise failure from None
            if bad_rows is not None:
                bad_rows.add(str(failure))
        else:
            records.lines.append(line)
    return records


def read_eval_items(path: str | Path) -> list[EvalItem]:
    """Read and validate an items file; ids must be unique.

    Raises:
        InputError: naming the file, line and field of the first bad item, or a duplicate id.
    """
    items = read_records(path, EvalItem)
    if not items:
        raise InputError("no evaluation items", path=path, hint="one JSON object per line")
    check_unique_ids(items, path)
    return items


def read_eval_instructions(path: str | Path) -> list[tuple[str, str]]:
    """``(id, instruction)`` of every evaluation item; the other fields are the evaluator's to check.

    Raises:
        MissingEvidenceError (a GateError, exit 2): the file is missing or holds no items (the gate must not pass without evidence).
        InputError: a row without a usable ``id`` or ``instruction`` (file, line, field).
    """
    source = Path(path)
    if not source.exists():
        raise MissingEvidenceError("evaluation items not found; the leakage gate cannot pass without them", path=source,
                                   field="data.eval_items", hint="give the evaluation items file (data.eval_items or --in eval_items=)")
    items: list[tuple[str, str]] = []
    for line, row in iter_rows(source):
        item_id = row.get("id")
        if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or not str(item_id).strip():
            raise InputError("missing or empty", path=source, line=line, field="id")
        instruction = row.get("instruction")
        if not isinstance(instruction, str):
            raise InputError("missing or not a string", path=source, line=line, field="instruction")
        try:
            items.append((str(item_id), check_text(instruction, "instruction")))
        except FormatError as error:
            raise InputError(error.reason, path=source, line=line, field="instruction") from None
    if not items:
        raise MissingEvidenceError("no evaluation items; the leakage gate has nothing to check against", path=source,
                                   hint="one JSON object per line with an id and an instruction")
    return items


def training_instructions(path: Path) -> list[tuple[str, str]]:
    """``(id, instruction)`` of each row of a training file (``iter_training_instructions``)."""
    return list(iter_training_instructions(path))


def iter_training_instructions(path: Path) -> Iterator[tuple[str, str]]:
    """``(id, instruction)`` of each row of a training file, one at a time: SFT rows and plain
    instruction files carry ``instruction``, preference pairs the rendered ``prompt`` (read back by
    stripping the format's tags).

    Raises:
        InputError: a row with neither, or a prompt not in the training format (file, line, field).
    """
    for line, row in iter_rows(path):
        row_id = str(row.get("id", row.get("instruction_id", line)))
        if isinstance(row.get("instruction"), str):
            yield row_id, row["instruction"]
        elif isinstance(row.get("prompt"), str) and instruction_from_prompt(row["prompt"]) is not None:
            yield row_id, instruction_from_prompt(row["prompt"])
        else:
            raise InputError("no instruction, and no prompt in the training format", path=path, line=line, field="instruction")


def check_training_files(
    eval_items_path: str | Path, training_paths: Sequence[str | Path], settings: LeakageSettings = LeakageSettings()
) -> tuple[list[Leak], dict[str, int]]:
    """Every leak of the evaluation items into any of the training files, and the rows read per file.

    For ``stage1 check-leakage``: the gate's rules, on training files made anywhere.

    Raises:
        InputError: a training file is missing or holds no rows, or a row has no instruction
            (file, line, field).
        MissingEvidenceError (a GateError, exit 2): the evaluation items are missing or empty.
    """
    eval_items = read_eval_instructions(eval_items_path)
    paths = list(dict.fromkeys(str(p) for p in training_paths))
    for path in paths:
        if not Path(path).exists():
            raise InputError("training file not found", path=path, field="--in train")
    counts = dict.fromkeys(paths, 0)

    def streamed(path: str) -> Iterator[tuple[str, str]]:  # rows pass through once: memory stays flat
        for row in iter_training_instructions(Path(path)):
            counts[path] += 1
            yield row
        if not counts[path]:
            raise InputError("no rows: an empty file is no evidence", path=path, field="--in train")

    return find_leaks(eval_items, {path: streamed(path) for path in paths}, settings), counts


def leakage_gate(
    eval_items_path: str | Path, training_sets: Mapping[str, Sequence[tuple[str, str]]], settings: LeakageSettings = LeakageSettings()
) -> dict[str, Any]:
    """The leakage gate (``stage1.core.leakage.gate_leaks``) against the evaluation items in a file.

    Raises:
        GateError: any leak; MissingEvidenceError (exit 2): the items file missing or empty (the gate fails closed).
        InputError: a bad row in the items file.
    """
    return gate_leaks(read_eval_instructions(eval_items_path), training_sets, settings, source=str(eval_items_path))


def leakage_gate_on_files(items_path: Path, training_paths: Sequence[Path]) -> dict[str, Any]:
    """Run the leakage gate (stage1.core.leakage) against every training file; fails closed.

    Raises:
        MissingEvidenceError (exit 2): a training file is missing or empty; GateError: an evaluation item appears in training data.
    """
    if not training_paths:
        return {"checked": False, "reason": "no training files given"}
    missing = [str(p) for p in training_paths if not Path(p).is_file()]
    if missing:
        raise MissingEvidenceError(f"leakage check: training file(s) not found: {', '.join(missing)}; the check cannot pass without them",
                                   path=missing[0], hint="build them first (python cli.py run), or check the run directory")
    training_sets = {str(path): training_instructions(Path(path)) for path in training_paths}
    empty = [name for name, rows in training_sets.items() if not rows]
    if empty:
        raise MissingEvidenceError(f"leakage check: training file(s) hold no rows: {', '.join(empty)}; an empty file is no evidence",
                                   path=empty[0])
    return {"checked": True, **leakage_gate(items_path, training_sets)}
