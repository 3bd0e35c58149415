"""One small exception family. Messages name the input: path, line, field."""

from __future__ import annotations


class GradlogError(Exception):
    """Base of every error gradlog raises on purpose; the CLI prints it as one line."""


class LogFormatError(GradlogError):
    """A log that cannot be read: missing, empty, not JSON, wrong types, unknown version."""

    def __init__(
        self,
        message: str,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        *,
        row: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.row = row  # 1-based row of a Parquet file (which has no lines)
        self.reason = message
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            where += ": "
        if row is not None:
            where += f"row {row}: "
        if field is not None:
            where += f"field '{field}': "
        super().__init__(where + message)


class RecorderConfigError(GradlogError, ValueError):
    """Bad recorder arguments, raised at construction rather than mid-training."""


class ClosedOutput(Exception):
    """The reader of standard output went away (``gradlog report log | head``).

    Not an ``OSError``: Click turns a broken pipe into exit code 1, which reads as a finding of
    ``--fail-on``; the CLI ends with its own code for a closed pipe instead.
    """


class SkippedSampleWarning(UserWarning):
    """A balance sample that was due could not be taken; training goes on, and the log marks
    the sample as skipped (the event's ``skipped`` field). Warned once per reason."""
