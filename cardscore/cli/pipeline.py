"""CLI commands of the pipeline area (registered on import by cardscore.cli):

`cardscore nightly --date D | --from A --to B [--force] [--from-stage S]` and
`cardscore runs --date D` (the run ledger of a day).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cardscore.cli.app import EXIT_USAGE, app, console, day_range, parse_day, settings_of

_STATUS_STYLE = {"succeeded": "green", "skipped": "yellow", "failed": "red", "done-before": "dim"}


class RichReporter:
    """Progress over all (day, stage) steps for a person at a terminal; one line per stage."""

    def __init__(self, bars: Progress, total_steps: int) -> None:
        self.bars = bars
        self.task = bars.add_task("nightly", total=total_steps)

    def started(self, day: date, stage) -> None:  # stage: orchestration.Stage
        self.bars.update(self.task, description=f"{day} · {stage.name}: {stage.description}")

    def finished(self, day: date, record) -> None:  # record: orchestration.StageRecord
        style = _STATUS_STYLE.get(record.status, "white")
        message = record.error or (record.outcome.message if record.outcome else "")
        self.bars.console.print(
            f"{day} [bold]{record.stage:<11}[/bold] [{style}]{record.status:<11}[/{style}] "
            f"{record.seconds:6.1f}s {message}", highlight=False,
        )
        self.bars.advance(self.task)


@contextmanager
def nightly_reporter(days: int, stages: int) -> Iterator[RichReporter | None]:
    """A rich reporter when a person watches; None (structured logs only) otherwise."""
    if not console.is_terminal:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bars:
        yield RichReporter(bars, days * stages)


def summary_table(results: Sequence) -> Table:  # Sequence[orchestration.DayResult]
    table = Table(title="nightly pipeline")
    for column in ("day", "stage", "status", "attempts", "seconds", "detail"):
        table.add_column(column)
    for result in results:
        for record in result.records:
            style = _STATUS_STYLE.get(record.status, "white")
            detail = record.error or (record.outcome.message if record.outcome else "")
            table.add_row(str(result.day), record.stage, f"[{style}]{record.status}[/{style}]",
                          str(record.attempts), f"{record.seconds:.1f}", detail)
    return table


@app.command("nightly")
def nightly(
    ctx: typer.Context,
    day: str | None = typer.Option(None, "--date", help="the day that closed: YYYY-MM-DD, today, yesterday"),
    start: str | None = typer.Option(None, "--from", help="first day of a backfill"),
    end: str | None = typer.Option(None, "--to", help="last day of a backfill, inclusive"),
    force: bool = typer.Option(False, "--force", help="re-run stages the ledger records as done"),
    from_stage: str | None = typer.Option(None, "--from-stage", help="start at this stage"),
    remote: str | None = typer.Option(None, "--remote", help="Spark Connect URL sc://host:port"),
) -> None:
    """Run the nightly pipeline for a day (or each day of a range): ingest, features, materialize, score, monitor.

    Gates inside each stage, retries with backoff, resume at the failed stage, a run ledger.
    Exit codes: 0 ok, 1 a stage failed, 2 usage or engine error, 3 monitoring alert.
    """
    from cardscore.core.engine import EngineError, get_spark, stop_spark
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext
    from cardscore.jobs.nightly import NIGHTLY_STAGES, exit_code, run_nightly

    days = day_range(day, start, end)
    names = [s.name for s in NIGHTLY_STAGES]
    if from_stage is not None and from_stage not in names:
        raise typer.BadParameter(f"unknown stage {from_stage!r}; stages are {', '.join(names)}")
    settings = settings_of(ctx)
    try:
        spark = get_spark(settings, remote=remote)
    except EngineError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        job = JobContext(settings, spark, Lake(spark, settings))
        with nightly_reporter(len(days), len(NIGHTLY_STAGES)) as reporter:
            results = run_nightly(job, days, force=force, from_stage=from_stage, reporter=reporter)
    finally:
        stop_spark()
    console.print(summary_table(results))
    raise typer.Exit(exit_code(results))


@app.command("runs")
def runs(
    ctx: typer.Context,
    day: str = typer.Option(..., "--date", help="the pipeline day, YYYY-MM-DD"),
    pipeline: str = typer.Option("nightly", "--pipeline", help="pipeline name in the ledger"),
    as_json: bool = typer.Option(False, "--json", help="print the ledger rows as JSON lines"),
) -> None:
    """Show the run ledger of a day: status, attempts, duration, table versions, model, error per stage."""
    from cardscore.core.engine import get_spark, stop_spark
    from cardscore.core.lake import Lake
    from cardscore.core.pipeline import RunLedger
    from cardscore.core.stage import JobContext

    settings = settings_of(ctx)
    the_day = parse_day(day)
    spark = get_spark(settings)
    try:
        rows = RunLedger(JobContext(settings, spark, Lake(spark, settings))).rows(pipeline, the_day)
    finally:
        stop_spark()
    if as_json:
        for row in rows:
            print(json.dumps(row, default=str))
        return
    table = Table(title=f"{pipeline} runs of {the_day}")
    for column in ("run", "stage", "status", "attempts", "seconds", "outputs", "model", "error"):
        table.add_column(column)
    for row in rows:
        style = _STATUS_STYLE.get(row["status"], "white")
        table.add_row(row["run_id"][-8:], row["stage"], f"[{style}]{row['status']}[/{style}]",
                      str(row["attempts"]), f"{row['duration_s']:.1f}", row["outputs"],
                      row["model_version"] or "", (row["error"] or "")[:80])
    console.print(table)
