"""CLI commands of the ingest area (registered on import by cardscore.cli): `cardscore run ingest`."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import typer

from cardscore.cli.app import EXIT_USAGE, console, day_range, run_app, settings_of


@run_app.command("ingest")
def run_ingest(
    ctx: typer.Context,
    day: str | None = typer.Option(
        None, "--date", help="the landing day to ingest: YYYY-MM-DD, today or yesterday (UTC)"
    ),
    start: str | None = typer.Option(None, "--from", help="first day of a range (backfill)"),
    end: str | None = typer.Option(None, "--to", help="last day of a range, inclusive"),
    remote: str | None = typer.Option(
        None, "--remote", help="Spark Connect URL sc://host:port (default: the configured engine)"
    ),
) -> None:
    """Ingest landing days: raw lines to bronze, valid records to silver, rejects to quarantine.

    Each day's silver rows pass the Great Expectations gates (expectations/suites/silver_*.json) before they are published; a failed gate exits with code 1 and leaves silver unchanged. Re-running a day changes nothing. Same work as `spark-submit jobs/ingest.py --date D`.
    """
    from cardscore.core.engine import EngineError, get_spark
    from cardscore.core.errors import StageFailed
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext
    from cardscore.jobs.ingest import IngestReport, ingest_day, summary_table

    settings = settings_of(ctx)
    days = day_range(day, start, end)
    try:
        spark = get_spark(settings, remote=remote)
    except EngineError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    job = JobContext(settings, spark, Lake(spark, settings))
    reports: list[IngestReport] = []
    try:
        with _day_bars(len(days)) as bars:
            for the_day in days:
                bars.start(the_day.isoformat())
                reports.append(ingest_day(job, the_day, progress=bars.phase))
                bars.done()
    except StageFailed as exc:
        if reports:
            console.print(summary_table(reports))
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(exc.exit_code) from None
    console.print(summary_table(reports))


class _Bars:
    """One bar over the days; its label shows the day and the phase being worked on."""

    def __init__(self, progress: Any, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("ingest", total=total) if progress else None
        self.day = ""

    def start(self, day: str) -> None:
        self.day = day
        self.phase("read")

    def phase(self, name: str) -> None:
        if self.progress:
            self.progress.update(self.task, description=f"{self.day} {name}")

    def done(self) -> None:
        if self.progress:
            self.progress.advance(self.task)


def _day_bars(total: int) -> Any:
    if not console.is_terminal:  # logs only when nobody watches
        return nullcontext(_Bars(None, total))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )

    class _Live:
        def __enter__(self) -> _Bars:
            progress.__enter__()
            return _Bars(progress, total)

        def __exit__(self, *exc: object) -> None:
            progress.__exit__(*exc)

    return _Live()
