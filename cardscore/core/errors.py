"""Errors that end a stage with a clear message and a specific exit code."""

from __future__ import annotations


class StageFailed(RuntimeError):
    """A stage stopped on purpose (a failed gate, missing input); nothing was published.

    The message says what failed and how to fix it; `exit_code` is what the process returns.
    """

    exit_code = 1

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage


class MissingInput(StageFailed):
    """The stage's input (landing files, a table, a model alias) does not exist yet."""
