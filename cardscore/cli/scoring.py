"""CLI commands of the scoring area (registered on import by cardscore.cli):
`cardscore run score --date D | --from A --to B`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cardscore.cli.app import EXIT_USAGE, console, day_range, run_app, settings_of


@run_app.command("score")
def run_score(
    ctx: typer.Context,
    day: str | None = typer.Option(None, "--date", help="the day whose transactions to score, YYYY-MM-DD"),
    start: str | None = typer.Option(None, "--from", help="first day of a range (backfill)"),
    end: str | None = typer.Option(None, "--to", help="last day of a range, inclusive"),
    remote: str | None = typer.Option(
        None, "--remote", help="Spark Connect URL sc://host:port (default: the configured engine)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the per-day reports as JSON on stdout"),
    plot: Path | None = typer.Option(
        None, "--plot", help="also draw the scored days' score distribution and unknown-entity shares (PNG)"
    ),
) -> None:
    """Score days of silver transactions with the champion model into the predictions table.

    Features come from the Feast store by the same point-in-time retrieval training uses; the model is the version the `scoring.model_alias` alias (champion) points to when the run starts, and every row records it. Each day's predictions pass the Great Expectations gate (expectations/suites/predictions.json) before they replace that day in the table, so re-running a day is safe.

    Exit code 1 when a gate fails, an input is missing (no silver day, no feature snapshot, no champion: train and promote one first) or the model is incompatible; nothing of that day is published then. Same work as `spark-submit jobs/score_batch.py --date D`.
    """
    from cardscore.core.engine import EngineError, get_spark
    from cardscore.core.errors import StageFailed
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext
    from cardscore.jobs.score_batch import ScoreReport, score_days

    settings = settings_of(ctx)
    days = day_range(day, start, end)
    try:
        spark = get_spark(settings, remote=remote)
    except EngineError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    job = JobContext(settings, spark, Lake(spark, settings))
    reports: list[ScoreReport] = []
    try:
        with _day_bar(len(days)) as bar:
            score_days(job, days, progress=bar.phase, on_day=lambda r: (reports.append(r), bar.advance()))
    except StageFailed as exc:
        if reports and not as_json:
            console.print(_summary(reports))
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(exc.exit_code) from None
    if plot is not None:
        _plot(job, reports, plot)
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    console.print(_summary(reports))
    if plot is not None:
        console.print(f"picture: {plot}")


def _summary(reports: list[Any]) -> Table:
    last = reports[-1]
    table = Table(title=f"{last.output_table}: scored by {last.model_name} v{last.model_version}")
    for column in ("day", "transactions", "unknown customers", "unknown terminals", "mean score", "seconds"):
        table.add_column(column, justify="right")
    shown = reports if len(reports) <= 15 else [*reports[:7], None, *reports[-7:]]
    for report in shown:
        if report is None:
            table.add_row("...", "", "", "", "", "")
            continue
        mean = "" if report.mean_score is None else f"{report.mean_score:.4f}"
        table.add_row(
            str(report.day), str(report.rows), str(report.unknown_customers),
            str(report.unknown_terminals), mean, f"{report.seconds:.1f}",
        )
    table.caption = f"table version {last.output_version}; run {last.run_id}"
    return table


class _Bar:
    """One bar over the days; its label shows the day's current phase (or nothing, for pipes)."""

    def __init__(self, progress: Any, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("score", total=total) if progress else None

    def phase(self, day: date, name: str) -> None:
        if self.progress:
            self.progress.update(self.task, description=f"{day.isoformat()} {name}")

    def advance(self) -> None:
        if self.progress:
            self.progress.advance(self.task)


@contextmanager
def _day_bar(total: int) -> Iterator[_Bar]:
    if not console.is_terminal:  # logs only when nobody watches
        yield _Bar(None, total)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    ) as progress:
        yield _Bar(progress, total)


def _plot(job: Any, reports: list[Any], path: Path) -> None:
    """Score histogram (log counts; rows with an unknown entity apart) and per-day counts.

    The histogram is aggregated in the engine; only its ~100 counts reach this process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from pyspark.sql import functions as F

    from cardscore.jobs.scoring_transforms import score_histogram

    bins = 50
    days = [r.day for r in reports]
    published = job.lake.read(reports[-1].output_table).where(F.col("tx_date").isin(days))
    counts = score_histogram(published, bins).toPandas()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    edges = np.arange(bins) / bins
    for unknown, label, color in ((False, "both entities known", "tab:blue"),
                                  (True, "customer or terminal unknown", "tab:orange")):
        part = counts[counts["any_unknown"] == unknown].groupby("bin")["count"].sum()
        heights = np.zeros(bins)
        heights[part.index.to_numpy()] = part.to_numpy()
        left.bar(edges, heights, width=1 / bins, align="edge", alpha=0.6, label=label, color=color)
    left.set_yscale("log")
    left.set_xlabel("score")
    left.set_ylabel("transactions (log)")
    left.set_title(f"score distribution, {days[0]} .. {days[-1]}")
    left.legend()
    x = np.arange(len(reports))
    right.bar(x, [r.rows for r in reports], color="tab:blue", alpha=0.6, label="scored")
    right.set_ylabel("transactions")
    right.set_ylim(0, 1.3 * max(r.rows for r in reports))  # room for the legend
    share = right.twinx()
    customers = [r.unknown_customers / max(r.rows, 1) for r in reports]
    terminals = [r.unknown_terminals / max(r.rows, 1) for r in reports]
    share.plot(x, customers, "o-", color="tab:orange", label="unknown customers")
    share.plot(x, terminals, "s-", color="tab:red", label="unknown terminals")
    share.set_ylabel("share of transactions")
    share.set_ylim(0, max(0.05, 1.3 * max(customers + terminals)))
    right.set_xticks(x, [d.isoformat() for d in days], rotation=45, ha="right")
    right.set_title(f"scored by {reports[-1].model_name} v{reports[-1].model_version}")
    share.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

