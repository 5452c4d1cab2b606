"""`cardscore config show|check`."""

from __future__ import annotations

import json

import typer

from cardscore.cli.app import app, console, settings_of

config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings as JSON, secrets redacted."""
    typer.echo(json.dumps(settings_of(ctx).redacted(), indent=2))


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the configuration; exit code 2 with the offending key on error."""
    settings = settings_of(ctx)
    console.print(f"configuration OK (profile {settings.profile}, home {settings.home_path})")


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (markdown) generated from the settings classes."""
    from cardscore.core.config.reference import reference_markdown

    typer.echo(reference_markdown(), nl=False)
