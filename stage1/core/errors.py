"""Typed errors. The CLI maps each kind to one exit code, in one place."""

from __future__ import annotations

from pathlib import Path

# 0 is success: a handler returns it, no error maps to it.
EXIT_GATE = 1  # a regression or a failed gate
EXIT_INPUT = 2  # bad input or configuration


class Stage1Error(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = EXIT_INPUT


class InputError(Stage1Error):
    """Bad input: names the file, the line (or item) and the field, and says what to do."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.message = message
        self.hint = hint
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.field is not None:
            text += f"field '{self.field}': "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(InputError):
    """A configuration that cannot run: unknown key, wrong type, impossible value."""


class LineageError(Stage1Error):
    """A checkpoint or adapter loaded onto something other than what it was trained from."""


class GateError(Stage1Error):
    """A check that must pass did not (leakage, a regression against golden results)."""

    exit_code = EXIT_GATE


class MissingEvidenceError(InputError, GateError):
    """A gate's evidence (evaluation items, training files) is missing or empty.

    The gate fails closed (it is a ``GateError``: nothing passes it), but the cause is bad input, not
    a finding, so the exit code is 2, like every other missing input.
    """

    exit_code = EXIT_INPUT


class DiskFullError(Stage1Error):
    """A write ran out of space (ENOSPC) or quota (EDQUOT); nothing half-written was left in place."""


class RunLockedError(Stage1Error):
    """Another process holds the run directory."""


class StaleUpstreamError(ConfigError):
    """A stage run alone would read files an upstream stage wrote that changed since (edited or damaged)."""


class TrainingError(Stage1Error):
    """Training cannot go on: a non-finite loss, or the adapter trained is not the one planned."""
