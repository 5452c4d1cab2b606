"""`cardscore runs --date D`: the run ledger of a day. (`cardscore nightly` goes through the
runner: cardscore/cli/stages.py.)"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from cardscore.cli.app import app, console, job_context, parse_day
from cardscore.core.console import STATUS_STYLE


@app.command("runs")
def runs(
    ctx: typer.Context,
    day: str = typer.Option(..., "--date", help="the pipeline day, YYYY-MM-DD"),
    pipeline: str = typer.Option("nightly", "--pipeline", help="pipeline name in the ledger"),
    as_json: bool = typer.Option(False, "--json", help="print the ledger rows as JSON lines"),
) -> None:
    """Show the run ledger of a day: status, attempts, duration, table versions, model, error per stage."""
    from cardscore.core.pipeline import RunLedger

    the_day = parse_day(day)
    with job_context(ctx) as job:
        rows = RunLedger(job).rows(pipeline, the_day)
    if as_json:
        for row in rows:
            print(json.dumps(row, default=str))
        return
    table = Table(title=f"{pipeline} runs of {the_day}")
    for column in ("run", "stage", "status", "attempts", "seconds", "outputs", "model", "error, or why it ran again"):
        table.add_column(column)
    for row in rows:
        style = STATUS_STYLE.get(row["status"], "white")
        why = json.loads(row["details"] or "{}").get("rerun_reason") or ""
        table.add_row(row["run_id"][-8:], row["stage"], f"[{style}]{row['status']}[/{style}]",
                      str(row["attempts"]), f"{row['duration_s']:.1f}", row["outputs"],
                      row["model_version"] or "", (row["error"] or why).split("\n")[0][:120])
    console.print(table)
