"""README's run-folder table and command list follow the stage declarations (``stages/table.py``):
a stage added to the table without a line in the README, or a folder renamed in ``io/layout.py``
without the README, fails here."""

from __future__ import annotations

import re
from pathlib import Path

from stage1.io.layout import STAGE_DIRS
from stage1.stages.table import STAGE_COMMANDS, STAGE_NAMES

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    return README.read_text(encoding="utf-8").split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _table_paths(section: str) -> list[str]:
    """The backquoted paths of the first column of the section's tables."""
    cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return [path for cell in cells for path in re.findall(r"`([^`]+)`", cell)]


def _expanded(path: str) -> list[str]:
    """``sft_data/{train,heldout}.jsonl`` as its two paths."""
    match = re.search(r"\{([^}]*)\}", path)
    if match is None:
        return [path]
    return [p for option in match.group(1).split(",") for p in _expanded(path[: match.start()] + option + path[match.end():])]


def _named_by(paths: list[str], folder: str) -> bool:
    """A path cell names ``folder``: the folder itself or a path inside it."""
    return any(p.rstrip("/") == folder or p.startswith(folder + "/") for path in paths for p in _expanded(path))


def test_every_stage_has_a_folder_and_every_folder_a_stage():
    assert set(STAGE_DIRS) == set(STAGE_NAMES)


def test_the_readme_run_folder_table_names_every_stage_folder():
    paths = _table_paths(_section("What `run` produces"))
    assert paths, "the table of the run folder is gone from README"
    missing = [f"{name} ({STAGE_DIRS[name]})" for name in STAGE_NAMES if not _named_by(paths, STAGE_DIRS[name])]
    assert missing == []


def test_the_readme_lists_every_stage_command():
    listed = set(re.findall(r"`([a-z-]+)`", _section("What `run` produces").split("Commands:", 1)[1].split("\n\n", 1)[0]))
    assert set(STAGE_COMMANDS) - listed == set()


def test_the_check_fails_for_a_folder_the_readme_does_not_name():
    assert not _named_by(_table_paths(_section("What `run` produces")), "no_such_stage_folder")
