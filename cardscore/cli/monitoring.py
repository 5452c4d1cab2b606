"""CLI commands of the monitoring area (registered on import by cardscore.cli):

    cardscore run monitor --date D | --from A --to B      drift, performance, freshness, alerts
    cardscore monitor trigger --date D [--dry-run]        the k-of-n retraining trigger
    cardscore monitor report --date D                     the day's alerts and where its report is
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cardscore.cli.app import (
    EXIT_FAILED,
    EXIT_USAGE,
    app,
    console,
    day_range,
    parse_day,
    run_app,
    settings_of,
)

monitor_app = typer.Typer(help="Monitoring results and the retraining trigger.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


def _job(ctx: typer.Context, remote: str | None) -> Any:
    from cardscore.core.engine import EngineError, get_spark
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext

    settings = settings_of(ctx)
    try:
        spark = get_spark(settings, remote=remote)
    except EngineError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    return JobContext(settings, spark, Lake(spark, settings))


@contextmanager
def _day_bar(total: int) -> Iterator[Any]:
    """One bar over the days, its label the day's phase; nothing when nobody watches."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        yield progress, progress.add_task("monitor", total=total)


@run_app.command("monitor")
def run_monitor(
    ctx: typer.Context,
    day: str | None = typer.Option(None, "--date", help="the day to monitor, YYYY-MM-DD (today, yesterday)"),
    start: str | None = typer.Option(None, "--from", help="first day of a range (backfill)"),
    end: str | None = typer.Option(None, "--to", help="last day of a range, inclusive"),
    remote: str | None = typer.Option(None, "--remote", help="Spark Connect URL sc://host:port"),
    trigger: bool | None = typer.Option(
        None, "--trigger/--no-trigger", help="also run the retraining trigger (default: monitoring.trigger.enabled)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the per-day reports as JSON on stdout"),
) -> None:
    """Monitor days: feature and score drift against the model's reference profile (PSI, KS), unknown-entity shares, delayed-label AUC / AP / card precision@k of the scored days with the labels known on D, freshness of every input, and the stream scorer's health when configured.

    Each day's metrics replace that day in the `ops.monitoring` Delta table; the HTML report is written to <home>/monitoring/<D>/report.html and logged to MLflow with the metrics. Every day is monitored; exit code 1 when any of them raised an alert (each alert is logged as `monitor.alert` and POSTed to the configured webhook). Same work as `spark-submit jobs/monitor.py --date D`.
    """
    from cardscore.core.errors import StageFailed
    from cardscore.jobs.monitor import monitor_day

    days = day_range(day, start, end)
    job = _job(ctx, remote)
    reports = []
    try:
        with _day_bar(len(days)) as bar:
            for d in days:
                progress = (lambda dd, phase: bar[0].update(bar[1], description=f"{dd} {phase}")) if bar else None
                reports.append(monitor_day(job, d, progress=progress, run_trigger=trigger))
                if bar:
                    bar[0].advance(bar[1])
    except StageFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(exc.exit_code) from None
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
    else:
        console.print(_summary(reports))
        for report in reports:
            for alert in report.alerts:
                console.print(f"[red]ALERT[/red] {report.day}: {escape(alert.describe())}")
            if report.trigger:
                decision = report.trigger.decision
                console.print(f"trigger {report.day}: {'FIRE' if decision.fire else 'no'} ({escape(decision.reason)})"
                              + (f"; training: {escape(str(report.trigger.training))}" if report.trigger.training else "")
                              + (f"; [red]{escape(report.trigger.error)}[/red]" if report.trigger.error else ""))
        if reports and reports[-1].report_path:
            console.print(f"report: {reports[-1].report_path}")
    if any(r.alerts for r in reports):
        raise typer.Exit(EXIT_FAILED)


def _summary(reports: list[Any]) -> Table:
    table = Table(title="monitoring")
    for column in ("day", "model", "predictions", "max feature PSI", "score PSI", "alerts", "seconds"):
        table.add_column(column, justify="right")
    for r in reports:
        psi = "-" if r.max_feature_psi is None else f"{r.max_feature_psi:.3f} ({r.max_feature_psi_feature})"
        table.add_row(str(r.day), f"v{r.model_version}" if r.model_version else "-", str(r.predictions), psi,
                      "-" if r.score_psi is None else f"{r.score_psi:.3f}",
                      f"[red]{len(r.alerts)}[/red]" if r.alerts else "0", f"{r.seconds:.1f}")
    return table


@monitor_app.command("trigger")
def trigger_cmd(
    ctx: typer.Context,
    day: str = typer.Option("yesterday", "--date", help="the latest monitored day, YYYY-MM-DD"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the decision; do not train"),
    train_start: str | None = typer.Option(
        None, "--train-start", help="first training day (default: the latest window whose test labels are complete)"
    ),
    remote: str | None = typer.Option(None, "--remote", help="Spark Connect URL sc://host:port"),
    as_json: bool = typer.Option(False, "--json", help="print the decision (and training result) as JSON"),
) -> None:
    """Retrain when a counted metric (monitoring.trigger.metrics) violated its threshold on at least k of the last n monitored days, the latest included (default 2 of 5).

    When it fires, the training job runs and its validation gate decides: a passing model becomes the challenger (`cardscore promote` makes it champion). Exit code 1 when the trigger fired and training failed or the gate rejected the model.
    """
    from cardscore.jobs.monitor import retraining_trigger

    job = _job(ctx, remote)
    outcome = retraining_trigger(job, parse_day(day), dry_run=dry_run,
                                 train_start=parse_day(train_start) if train_start else None)
    decision = outcome.decision
    if as_json:
        print(json.dumps({"decision": decision.to_dict(), "training": outcome.training, "error": outcome.error,
                          "dry_run": dry_run}, indent=2, default=str))
    else:
        table = Table(title=f"retraining trigger {decision.day} (k={decision.k} of n={decision.n})")
        table.add_column("day")
        table.add_column("violations")
        for d in decision.window:
            table.add_row(d, escape(", ".join(decision.metrics.get(d, [])) or "-"))
        console.print(table)
        verdict = "[bold red]FIRE[/bold red]" if decision.fire else "[green]no retraining[/green]"
        console.print(f"{verdict}: {escape(decision.reason)}" + (" (dry run: nothing trained)" if dry_run and decision.fire else ""))
        if outcome.training:
            console.print(f"training: {outcome.training}")
        if outcome.error:
            console.print(f"[red]{escape(outcome.error)}[/red]")
    if outcome.error:
        raise typer.Exit(EXIT_FAILED)


@monitor_app.command("report")
def report_cmd(
    ctx: typer.Context,
    day: str = typer.Option("yesterday", "--date", help="the monitored day, YYYY-MM-DD"),
    remote: str | None = typer.Option(None, "--remote", help="Spark Connect URL sc://host:port"),
    all_rows: bool = typer.Option(False, "--all", help="every metric row, not only the violated ones"),
) -> None:
    """Show a monitored day's rows from the monitoring table (violations by default) and the path of its HTML report."""
    from cardscore.jobs.monitor import read_rows, reports_dir

    job = _job(ctx, remote)
    d: date = parse_day(day)
    rows = read_rows(job, d, d)
    if rows.empty:
        console.print(f"no monitoring rows for {d}; run `cardscore run monitor --date {d}`")
        raise typer.Exit(EXIT_FAILED)
    shown = rows if all_rows else rows[rows["violated"].astype(bool)]
    table = Table(title=f"monitoring {d}: {int(rows['violated'].sum())} violation(s) in {len(rows)} rows")
    for column in ("metric", "subject", "scored day", "version", "value", "threshold"):
        table.add_column(column, justify="right" if column in ("value", "threshold") else "left")
    for r in shown.sort_values(["metric", "subject"], na_position="first").itertuples():
        table.add_row(r.metric, _text(r.subject), _text(r.scored_day), _text(r.model_version), _num(r.value),
                      _num(r.threshold), style="red" if r.violated else None)
    console.print(table)
    path = reports_dir(job.settings) / d.isoformat() / "report.html"
    console.print(f"report: {path}" if path.exists() else "no HTML report on this machine")


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _num(value: Any) -> str:
    return "" if value is None or value != value else f"{value:.4g}"
