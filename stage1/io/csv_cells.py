"""CSV cells that a record reads as something other than text.

A CSV cell is always a string, while the records take real booleans (JSON files carry them as
such); the standard ``csv`` module has no typed columns, so the few boolean columns are read here.
"""

from __future__ import annotations

from pathlib import Path

from stage1.core.errors import InputError

#: Columns a record reads as a boolean. A CSV cell is always text, so these are converted here (JSON
#: files carry real booleans); every other column stays text for the record's own checks.
CSV_BOOLEAN_COLUMNS = frozenset({"refusal_expected", "safe"})
#: The spellings a CSV boolean cell may take, compared without case and surrounding spaces.
CSV_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def csv_boolean(text: str, source: Path, line: int, name: str) -> bool:
    """``text`` read as a boolean. Raises InputError naming the cell when it is none of ``CSV_BOOLEANS``."""
    value = CSV_BOOLEANS.get(text.strip().lower())
    if value is None:
        raise InputError(f"expected a boolean, got {text!r}", path=source, line=line, field=name,
                         hint=f"write one of {', '.join(CSV_BOOLEANS)} (any case), or leave the cell empty for the default")
    return value



def typed_cells(cells: dict[str, str], source: Path, line: int) -> dict[str, object]:
    """One CSV row's non-empty cells, with each of ``CSV_BOOLEAN_COLUMNS`` read as a boolean."""
    return {name: csv_boolean(text, source, line, name) if name in CSV_BOOLEAN_COLUMNS else text for name, text in cells.items()}
