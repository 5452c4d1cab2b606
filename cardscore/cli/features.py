"""CLI commands of the features area (registered on import by cardscore.cli):

`cardscore run features --date D | --from A --to B`, `cardscore materialize --date D | ...`,
`cardscore features apply`, `cardscore features env`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cardscore.cli.app import EXIT_FAILED, EXIT_USAGE, app, console, day_range, run_app, settings_of
from cardscore.core.config.secrets import has_literal_password

features_app = typer.Typer(
    help="The Feast feature store: register its definitions, export its settings for Feast's CLI.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")

_DATE_HELP = "the snapshot day, YYYY-MM-DD"
_FROM_HELP = "first day of a range (backfill)"
_TO_HELP = "last day of a range, inclusive"
_REMOTE_HELP = "Spark Connect URL sc://host:port (default: the configured engine)"


@contextmanager
def _day_bar(total: int) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over days when a person watches; nothing in pipelines/CI."""
    if not console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    ) as bars:
        task = bars.add_task("snapshot days", total=total)

        def progress(done: int, of: int) -> None:
            bars.update(task, completed=done, total=of)

        yield progress


@contextmanager
def _job_context(ctx: typer.Context, remote: str | None) -> Iterator[Any]:
    from cardscore.core.engine import EngineError, get_spark, stop_spark
    from cardscore.core.errors import StageFailed
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext

    settings = settings_of(ctx)
    try:
        spark = get_spark(settings, remote=remote)
    except EngineError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        yield JobContext(settings, spark, Lake(spark, settings))
    except StageFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        stop_spark()


@run_app.command("features")
def run_features(
    ctx: typer.Context,
    day: str | None = typer.Option(None, "--date", help=_DATE_HELP),
    start: str | None = typer.Option(None, "--from", help=_FROM_HELP),
    end: str | None = typer.Option(None, "--to", help=_TO_HELP),
    remote: str | None = typer.Option(None, "--remote", help=_REMOTE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the per-day reports as JSON on stdout"),
) -> None:
    """Build the daily feature snapshots: silver -> gold customer and terminal features.

    The snapshot of day D describes everything strictly before D (customers: transactions in [D-30, D); terminals: [D-37, D-7) with frauds reported before D). A range is computed in passes of features.backfill_chunk_days days; each pass is gated with Great Expectations before it replaces its days in the gold tables, so re-running is safe.

    Exit code 1 when a gate fails or an input is missing (nothing is published then).
    """
    from cardscore.jobs.build_features import build_features_range

    days = day_range(day, start, end)
    with _job_context(ctx, remote) as job, _day_bar(len(days)) as progress:
        reports = build_features_range(job, days[0], days[-1], progress=progress)
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    table = Table(title=f"feature snapshots {days[0]} .. {days[-1]}")
    for column in ("day", "customers", "terminals"):
        table.add_column(column, justify="right")
    shown = reports if len(reports) <= 15 else [*reports[:7], None, *reports[-7:]]
    for report in shown:
        if report is None:
            table.add_row("...", "", "")
        else:
            table.add_row(str(report.day), str(report.customer_rows), str(report.terminal_rows))
    console.print(table)
    versions = reports[-1]
    console.print(
        f"published: gold.customer_features v{versions.customer_version}, "
        f"gold.terminal_features v{versions.terminal_version}"
    )


@app.command("materialize")
def materialize_cmd(
    ctx: typer.Context,
    day: str | None = typer.Option(None, "--date", help=_DATE_HELP),
    start: str | None = typer.Option(None, "--from", help=_FROM_HELP),
    end: str | None = typer.Option(None, "--to", help=_TO_HELP),
    remote: str | None = typer.Option(None, "--remote", help=_REMOTE_HELP),
) -> None:
    """Load feature snapshots into the online store (SQLite by default, or Redis).

    The stream scorer serves a transaction of day D only from day D's snapshot, so materialize day D before D's transactions arrive. A range loads each entity's latest row.
    """
    from cardscore.features.store import materialize

    days = day_range(day, start, end)
    with _job_context(ctx, remote) as job, console.status(
        f"materializing {days[0]} .. {days[-1]} into {job.settings.feast.online_store}"
    ):
        report = materialize(job.settings, job.spark, days[0], days[-1])
    console.print(
        f"online store ({report.online_store}) now serves {report.last}: "
        f"{report.customer_rows} customers, {report.terminal_rows} terminals "
        f"({report.seconds:.2f} s)"
    )


@features_app.command("apply")
def features_apply(ctx: typer.Context) -> None:
    """Register entities, Delta sources, feature views, the on-demand view and the FeatureService in the Feast registry (idempotent)."""
    from cardscore.features.store import apply, feast_objects

    settings = settings_of(ctx)
    apply(settings)
    objects = feast_objects(settings)
    table = Table(title=f"Feast project {settings.feast.project}")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("detail")
    for entity in objects.entities:
        table.add_row("entity", entity.name, entity.join_key)
    for view in objects.views:
        table.add_row("feature view", view.name, f"{len(view.features)} features, TTL {view.ttl}")
    table.add_row("on-demand view", objects.request_view.name, "request-time flags (python mode)")
    table.add_row("feature service", objects.service.name, "the model's features")
    console.print(table)
    console.print(f"registry: {settings.feast_registry}")


@features_app.command("env")
def features_env(ctx: typer.Context) -> None:
    """Print shell exports that let Feast's own CLI, run from features/, use these settings.

    eval "$(cardscore features env)"; cd features; feast apply; feast materialize-incremental 2018-05-01T00:00:00

    Feast's Spark store also needs SPARK_REMOTE, e.g. the engine of `cardscore engine start`.
    """
    settings = settings_of(ctx)
    values = {
        "CARDSCORE_FEAST_PROJECT": settings.feast.project,
        "CARDSCORE_FEAST_REGISTRY": settings.feast_registry,
        "CARDSCORE_FEAST_SQLITE_PATH": settings.feast_sqlite_path,
    }
    secret_note = None
    if settings.feast.online_store == "redis":
        from cardscore import features

        values["FEAST_FS_YAML_FILE_PATH"] = str(Path(features.__file__).parent / "feature_store.redis.yaml")
        connection = settings.feast.redis_connection_string or ""
        if has_literal_password(connection):  # never print a secret: the user sets this one
            secret_note = "# set CARDSCORE_FEAST_REDIS yourself: the connection string holds a password"
        else:
            values["CARDSCORE_FEAST_REDIS"] = connection
    for name, value in values.items():
        print(f"export {name}={shlex.quote(value)}")
    if secret_note:
        print(secret_note)
    if settings.engine.mode == "connect" and settings.engine.remote:
        print(f"export SPARK_REMOTE={shlex.quote(settings.engine.remote)}")
    else:
        port = settings.engine.server_port
        print(f"# start an engine first (cardscore engine start), then: export SPARK_REMOTE=sc://127.0.0.1:{port}")


@features_app.command("plot")
def features_plot(
    ctx: typer.Context,
    day: str | None = typer.Option(None, "--date", help=_DATE_HELP),
    start: str | None = typer.Option(None, "--from", help=_FROM_HELP),
    end: str | None = typer.Option(None, "--to", help=_TO_HELP),
    out: Path | None = typer.Option(
        None, "--out", help="PNG to write (default: <home>/reports/features_<from>_<to>.png)"
    ),
    remote: str | None = typer.Option(None, "--remote", help=_REMOTE_HELP),
) -> None:
    """Draw the gold snapshots over days: active customers and terminals, and each feature's daily mean.

    A sudden jump usually means a pipeline problem (a missing ingest day, a late label feed) or a real shift worth a look.
    """
    from cardscore.features.report import daily_summary, plot_daily_summary

    days = day_range(day, start, end)
    with _job_context(ctx, remote) as job:
        try:
            summary = daily_summary(job.lake, days[0], days[-1])
        except LookupError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(EXIT_FAILED) from None
    target = out or job.settings.home_path / "reports" / f"features_{days[0]}_{days[-1]}.png"
    path = plot_daily_summary(summary, target)
    console.print(
        f"{len(summary)} days, {int(summary['customers'].mean())} customers and "
        f"{int(summary['terminals'].mean())} terminals active a day on average"
    )
    console.print(f"picture: {path}")
