"""What a stage is: a typed spec around one library function, and the context it runs in.

A stage (ingest, features, materialize, score, train, monitor, retrain) is a `StageSpec`: a
name, whether it is dated, the tables it reads and writes, the gates it runs, its own
command-line options, and `run(call) -> StageOutcome`. Nothing else is needed to run it:
`cardscore.core.runner` resolves the days (`--date/--from/--to/--shift-days`), opens the
context, runs the stage for each day (or once for a range, when the stage computes a range
in one pass), records the ledger rows and maps failures to exit codes. The `spark-submit`
entry files, the CLI, the nightly composition, the scheduler tasks and the notebooks all go
through that runner, so every dated stage honours `--shift-days` by construction.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from cardscore.core.timing import Progress

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cardscore.core.config import Settings
    from cardscore.core.lake import Lake

# Exit codes every entry point uses.
EXIT_OK = 0
EXIT_FAILED = 1  # the stage failed: a gate, a missing input, an error after its retries
EXIT_USAGE = 2  # bad arguments, configuration or engine
EXIT_ALERT = 3  # a pipeline published its data, but monitoring raised an alert

SUCCEEDED, FAILED, SKIPPED, DONE_BEFORE = "succeeded", "failed", "skipped", "done-before"


@dataclass
class JobContext:
    """What a stage works with: the settings, the engine session and the lake on it."""

    settings: Settings
    spark: SparkSession
    lake: Lake


@dataclass
class StageOutcome:
    """What a stage reports. `status` is succeeded, or skipped when there was nothing to do.

    `inputs`/`outputs` are the Delta versions read and written (the ledger keeps them);
    `details` is JSON-able; `report` is the stage's typed report for people (not stored);
    `alerts` lists what monitoring raised (the data are published, the exit code says so).
    """

    status: str = SUCCEEDED
    inputs: dict[str, int | None] = field(default_factory=dict)
    outputs: dict[str, int | None] = field(default_factory=dict)
    model_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    report: Any = field(default=None, repr=False, compare=False)
    alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StageCall:
    """One call of a stage: its context, the day(s) it works on, its options, a progress hook."""

    ctx: JobContext
    days: tuple[date, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    # Shared by the calls of one run of the stage (every day of a range): e.g. the model
    # version the batch scorer resolved before its first day.
    run_state: dict[str, Any] = field(default_factory=dict)

    @property
    def day(self) -> date:
        """The one day of a per-day call."""
        if len(self.days) != 1:
            raise ValueError(f"this call covers {len(self.days)} days, not one")
        return self.days[0]

    def phase(self, name: str) -> None:
        if self.progress:
            self.progress(name)


@dataclass(frozen=True)
class Input:
    """A Delta table a stage reads, and which of its date partitions the work of day X reads:
    `partition` in [X + first, X + last] (None: unbounded on that side; no `partition`: the
    whole table). The runner records the table's version when the stage runs and re-runs a
    stage the ledger records as done when a commit since then touched that window."""

    table: str
    partition: str | None = None
    first: int | None = None
    last: int | None = None

    def window(self, day: date | None) -> tuple[date | None, date | None]:
        if day is None or self.partition is None:
            return None, None
        return (None if self.first is None else day + timedelta(days=self.first),
                None if self.last is None else day + timedelta(days=self.last))

    def __str__(self) -> str:
        return self.table


def is_table_name(name: str) -> bool:
    """`layer.name` (a Delta table of the lake), not a description such as "landing"."""
    parts = name.split(".")
    return len(parts) == 2 and all(p.replace("_", "").isalnum() for p in parts)


@dataclass(frozen=True)
class StageSpec:
    """A stage, as every entry point sees it.

    - `dated`: the stage works on days; the runner calls `run` once per day, or once for all
      the requested days when `one_pass` is set (the stage computes a range in one pass and
      returns one outcome per day, in order);
    - `add_options(parser)` declares the stage's own command-line options; their parsed values
      reach `run` as `call.options` (the nightly composition passes its own);
    - `summarize(reports)` returns something `rich` can print for a person, from the typed
      reports of the run's outcomes (called only when there are some);
    - `inputs` names what it reads: `Input`s (a table and the partitions a day reads), table
      names (any change of the table counts) or descriptions ("landing"); `observe(ctx, day)`
      fingerprints inputs that are not Delta tables (a landing day's files). The runner records
      both with every run, and a composition re-runs a stage done before when they changed.
    """

    name: str
    description: str
    run: Callable[[StageCall], StageOutcome | Sequence[StageOutcome]]
    dated: bool = True
    one_pass: bool = False
    inputs: tuple[str | Input, ...] = ()
    outputs: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()
    add_options: Callable[[argparse.ArgumentParser], None] | None = None
    summarize: Callable[[Sequence[Any]], Any] | None = None
    # after_run(ctx, outcomes, options): once after a standalone run of all its days (e.g. a
    # picture of the scored range); never inside a composition.
    after_run: Callable[[JobContext, Sequence[StageOutcome], Mapping[str, Any]], None] | None = None
    observe: Callable[[JobContext, date], Mapping[str, str]] | None = None

    def tracked_inputs(self) -> tuple[Input, ...]:
        """The inputs that are Delta tables, as `Input`s (what the runner compares)."""
        return tuple(i if isinstance(i, Input) else Input(i) for i in self.inputs
                     if isinstance(i, Input) or is_table_name(i))

    def default_options(self) -> dict[str, Any]:
        """The stage's options with their defaults (what a composition passes unless it says)."""
        parser = argparse.ArgumentParser(add_help=False)
        if self.add_options:
            self.add_options(parser)
        return vars(parser.parse_args([]))


def job_context(settings: Settings, spark: SparkSession | None = None, remote: str | None = None) -> JobContext:
    """A context on `spark`, or on the configured engine's session (started once per process
    and shared; whoever started it stops it with `cardscore.core.engine.stop_spark`)."""
    from cardscore.core.engine import get_spark
    from cardscore.core.lake import Lake

    session = spark if spark is not None else get_spark(settings, remote=remote)
    return JobContext(settings, session, Lake(session, settings))


@contextmanager
def open_context(
    settings: Settings, remote: str | None = None, spark: SparkSession | None = None
) -> Iterator[JobContext]:
    """The context of one run: on the given session, or on the configured engine's. A session
    this run started is stopped after it; one the process already had is left to its owner.
    Raises `cardscore.core.engine.EngineError` when the engine cannot start."""
    from cardscore.core.engine import has_session, stop_spark

    started_here = spark is None and not has_session()
    try:
        yield job_context(settings, spark, remote)
    finally:
        if started_here:
            stop_spark()
