"""What a run shows: progress bars and a summary for a person at a terminal, plain lines
(and structured logs) for schedulers and pipes. Used by `cardscore.core.runner.main`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from cardscore.core.pipeline import Composition, DayResult, LogReporter, StageRecord, Step
from cardscore.core.stage import FAILED, StageSpec
from cardscore.core.timing import Progress

if TYPE_CHECKING:
    from rich.progress import Progress as Bars

STATUS_STYLE = {"succeeded": "green", "skipped": "yellow", "failed": "red", "done-before": "dim"}
stderr = Console(stderr=True)


class RichReporter(LogReporter):
    """One bar over every (day, stage) step, its label the stage's current phase; one line per
    finished stage. Logs as the plain reporter does."""

    def __init__(self, bars: Bars, total_steps: int) -> None:
        self.bars = bars
        self.task = bars.add_task("", total=total_steps)

    def started(self, day: date | None, step: Step) -> None:
        super().started(day, step)
        self.bars.update(self.task, description=f"{_day(day)}{step.name}: {step.description}")

    def progress(self, day: date | None, step: Step) -> Progress | None:
        def phase(name: str) -> None:
            self.bars.update(self.task, description=f"{_day(day)}{step.name}: {name}")

        return phase

    def finished(self, day: date | None, record: StageRecord) -> None:
        super().finished(day, record)
        style = STATUS_STYLE.get(record.status, "white")
        message = record_message(record)
        self.bars.console.print(
            f"{_day(day)}[bold]{record.stage:<11}[/bold] [{style}]{record.status:<11}[/{style}] "
            f"{record.seconds:6.1f}s {message}", highlight=False,
        )
        self.bars.advance(self.task)


@contextmanager
def reporter(target: StageSpec | Composition, days: Sequence[date]) -> Iterator[LogReporter]:
    """A rich reporter when a person watches; structured logs only otherwise."""
    if not stderr.is_terminal:
        yield LogReporter()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    steps = len(target.steps) if isinstance(target, Composition) else 1
    with Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
              TimeElapsedColumn(), console=stderr) as bars:
        yield RichReporter(bars, steps * max(len(days), 1))


def summary(target: StageSpec | Composition, results: Sequence[DayResult], lines: bool = True) -> None:
    """Result lines on stdout (one per day and stage; `lines`), the stage's own summary table
    (or the composition's table of stages) and the errors on stderr."""
    for result in results:
        for record in result.records:
            if record.status == FAILED or not lines:
                continue
            message = record_message(record, errors=False)
            print(f"{_day(record.day)}{record.stage} {record.status}{': ' + message if message else ''}",
                  flush=True)
    table: Any = None
    if isinstance(target, Composition):
        table = records_table(target.name, results)
    elif target.summarize is not None:
        reports = [r.outcome.report for res in results for r in res.records
                   if r.outcome is not None and r.outcome.report is not None]
        table = target.summarize(reports) if reports else None
    if table is not None:
        stderr.print(table)
    for result in results:
        failed = result.failed
        if failed is not None:
            stderr.print(f"[red]{escape(failed.error or '')}[/red]", highlight=False, soft_wrap=True)


def records_table(title: str, results: Sequence[DayResult]) -> Any:
    from rich.table import Table

    table = Table(title=f"{title} pipeline")
    for column in ("day", "stage", "status", "attempts", "seconds", "detail"):
        table.add_column(column)
    for result in results:
        for record in result.records:
            style = STATUS_STYLE.get(record.status, "white")
            detail = record_message(record)
            table.add_row(str(record.day or ""), record.stage, f"[{style}]{record.status}[/{style}]",
                          str(record.attempts), f"{record.seconds:.1f}", detail)
    return table


@contextmanager
def phase_bars(console: Console, transient: bool = False, jupyter: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """One rich progress bar per phase; yields `progress(phase, done, total)`.

    When no person watches (not a terminal, or a notebook when `jupyter`: pipelines, CI, logs
    to a file) nothing is drawn and `progress` does nothing, so callers never need to check.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    if not (console.is_terminal or (jupyter and console.is_jupyter)):
        yield lambda phase, done, total: None
        return
    with Bars(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
              TimeElapsedColumn(), console=console, transient=transient) as bars:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bars.add_task(phase, total=total)
            bars.update(tasks[phase], completed=done, total=total)

        yield progress


def record_message(record: StageRecord, errors: bool = True) -> str:
    """What a stage's line says: its error (first line) or message, and why it ran again or not."""
    message = (record.error or "").split("\n")[0] if errors and record.error else (
        record.outcome.message if record.outcome else "")
    if record.reason:
        why = f"re-run: {record.reason}" if record.status != "done-before" else record.reason
        message = f"{message} ({why})" if message else why
    return message


def _day(day: date | None) -> str:
    return f"{day} " if day else ""
