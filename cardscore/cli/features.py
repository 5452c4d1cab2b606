"""CLI commands of the features area (registered on import by cardscore.cli):
`cardscore features apply|env|...`. The features and materialize stages are run through the
runner (cardscore/cli/stages.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.table import Table

from cardscore.cli.app import EXIT_FAILED, app, console, days_of, job_context, settings_of
from cardscore.core.config.secrets import has_literal_password

features_app = typer.Typer(
    help="The Feast feature store: register its definitions, export its settings for Feast's CLI.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")

_DATE_HELP = "the snapshot day, YYYY-MM-DD"
_FROM_HELP = "first day of a range"
_TO_HELP = "last day of a range, inclusive"
_REMOTE_HELP = "Spark Connect URL sc://host:port (default: the configured engine)"


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

    cardscore engine start; eval "$(cardscore features env)"; cd features; feast plan; feast apply

    Every location is absolute (Feast runs from features/): the registry, the online store, the
    lake (CARDSCORE_FEAST_LAKE_ROOT), the config file (CARDSCORE_CONFIG), and SPARK_REMOTE when
    the engine of these settings runs (Feast's Spark store needs one).
    """
    from cardscore.cli.app import CliState
    from cardscore.core.config import ConfigError, config_file
    from cardscore.features.feast_cli import exports
    from cardscore.services.engine_server import engine_service

    settings = settings_of(ctx)
    state = ctx.find_root().obj
    try:
        config = config_file(state.config_path if isinstance(state, CliState) else None)
    except ConfigError:
        config = None  # settings_of already loaded it; only an unusual race gets here
    values = exports(settings, config)
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
    elif (engine := engine_service(settings).status()).running:
        print(f"export SPARK_REMOTE={shlex.quote(engine.address)}")
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

    days = days_of(day, start, end)
    with job_context(ctx, remote) as job:
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
