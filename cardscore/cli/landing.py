"""`cardscore landing status|supersede|retract --date D`: the landing files of a day and their
corrections (jobs/ingest/corrections.py). Each command is a thin call of that library.

    cardscore landing status    --date 2018-04-03
    cardscore landing supersede --date 2018-04-03 --file transactions-2018-04-03-v2.jsonl --reason "re-delivery"
    cardscore landing retract   --date 2018-04-03 --file late-labels.jsonl --reason "sent to us by mistake"
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from cardscore.cli.app import app, console, job_context, parse_day

landing_app = typer.Typer(
    help="The landing files of a day: status, and corrections (supersede, retract) that the next ingest honours.",
    no_args_is_help=True,
)
app.add_typer(landing_app, name="landing")

DAY = typer.Option(..., "--date", help="the landing day, YYYY-MM-DD")
FEED = typer.Option(None, "--feed", help="transactions or labels (only when the file name is in both)")
ACTOR = typer.Option(None, "--actor", help="who records the correction (default $USER)")


@landing_app.command("status")
def status(
    ctx: typer.Context,
    day: str = DAY,
    as_json: bool = typer.Option(False, "--json", help="print one JSON object per file"),
) -> None:
    """Show the day's landing files: in effect, superseded or retracted (who, why, when), lines, rows in silver, quarantined lines by reason."""
    from cardscore.jobs.ingest.corrections import day_status

    the_day = parse_day(day)
    with job_context(ctx) as job:
        files = day_status(job, the_day)
    if as_json:
        for f in files:
            print(json.dumps(f.to_dict(), default=str))
        return
    if not files:
        console.print(f"no landing files for {the_day}")
        return
    table = Table(title=f"landing {the_day}")
    for column in ("feed", "file", "state", "lines", "in silver", "quarantined", "correction"):
        table.add_column(column, justify="right" if column in ("lines", "in silver") else "left")
    styles = {"in effect": "green", "superseded": "yellow", "retracted": "red", "not loaded yet": "dim"}
    for f in files:
        quarantined = ", ".join(f"{reason} {count:,}" for reason, count in f.quarantined.items())
        table.add_row(f.feed, f.name, f"[{styles[f.state]}]{f.state}[/{styles[f.state]}]",
                      "" if f.lines is None else f"{f.lines:,}", f"{f.in_silver:,}", quarantined,
                      f.withdrawal.describe() if f.withdrawal else "")
    console.print(table)


@landing_app.command("supersede")
def supersede(
    ctx: typer.Context,
    day: str = DAY,
    file: str = typer.Option(..., "--file", help="the corrected file, already delivered into the day's folder"),
    reason: str = typer.Option(..., "--reason", help="why (kept with the withdrawn files)"),
    feed: str | None = FEED,
    actor: str | None = ACTOR,
) -> None:
    """Record that FILE replaces the day's other files of its feed; the next ingest of the day uses FILE only."""
    from cardscore.jobs.ingest import corrections

    with job_context(ctx) as job:
        result = corrections.supersede(job, parse_day(day), file, reason, actor=actor, feed=feed)
    print(result.message())


@landing_app.command("retract")
def retract(
    ctx: typer.Context,
    day: str = DAY,
    file: str = typer.Option(..., "--file", help="the landing file to withdraw"),
    reason: str = typer.Option(..., "--reason", help="why (kept with the withdrawn file)"),
    feed: str | None = FEED,
    actor: str | None = ACTOR,
) -> None:
    """Record that FILE is withdrawn; the next ingest of the day leaves its lines out of silver."""
    from cardscore.jobs.ingest import corrections

    with job_context(ctx) as job:
        result = corrections.retract(job, parse_day(day), file, reason, actor=actor, feed=feed)
    print(result.message())
