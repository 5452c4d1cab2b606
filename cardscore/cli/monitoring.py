"""`cardscore monitor report --date D`: a monitored day's rows and where its report is.

`cardscore run monitor` and `cardscore monitor trigger` (= `cardscore run retrain`) go through
the runner (cardscore/cli/stages.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

import typer
from rich.table import Table

from cardscore.cli.app import EXIT_FAILED, app, console, job_context, parse_day

monitor_app = typer.Typer(help="Monitoring results and the retraining trigger.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("report")
def report_cmd(
    ctx: typer.Context,
    day: str = typer.Option("yesterday", "--date", help="the monitored day, YYYY-MM-DD"),
    remote: str | None = typer.Option(None, "--remote", help="Spark Connect URL sc://host:port"),
    all_rows: bool = typer.Option(False, "--all", help="every metric row, not only the violated ones"),
) -> None:
    """Show a monitored day's rows from the monitoring table (violations by default) and the path of its HTML report."""
    from cardscore.jobs.monitor.stage import reports_dir
    from cardscore.monitoring.table import read_rows

    d: date = parse_day(day)
    with job_context(ctx, remote) as job:
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
