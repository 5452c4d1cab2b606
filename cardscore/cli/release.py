"""`cardscore release status|shadow|canary|promote|abort|freeze|unfreeze|history`: the safe
release path of a model version (state kept in the MLflow registry: `cardscore.core.release`).
A thin client: it parses, calls `cardscore.core.release`, prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer

from cardscore.cli.app import EXIT_FAILED, app, console, settings_of

release_app = typer.Typer(
    help="Ship a model safely: shadow, canary by card share, promote, abort, freeze (rule-based fallback).",
    no_args_is_help=True,
)
app.add_typer(release_app, name="release")

_ACTOR = typer.Option(None, "--actor", help="who (default $USER); recorded on the registry")


def _run(fn: Callable[..., Any], **kwargs: Any) -> Any:
    from cardscore.core.errors import StageFailed

    try:
        return fn(settings=kwargs.pop("settings"), **kwargs)
    except StageFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None


def _print_event(event: Any) -> None:
    typer.echo(event.describe())


@release_app.command("status")
def status_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="print the state as JSON"),
) -> None:
    """The champion and the release state every scorer serves (one registry read)."""
    from dataclasses import asdict

    from cardscore.core import release

    view = _run(release.read_view, settings=settings_of(ctx))
    if as_json:
        typer.echo(json.dumps({"model": view.model_name, "champion": view.champion,
                               **asdict(view.state)}, sort_keys=True))
        return
    state = view.state
    typer.echo(f"model {view.model_name}: champion v{view.champion}" if view.champion
               else f"model {view.model_name}: no champion")
    typer.echo(state.describe())
    if state.action:
        typer.echo(f"last change: {state.action} by {state.by} at {state.at}; reason: {state.reason}")
    if state.aborted:
        a = state.aborted
        typer.echo(f"last abort: canary v{a.version} at {a.share:g}% by {a.by} at {a.at}; reason: {a.reason}")


@release_app.command("shadow")
def shadow_cmd(
    ctx: typer.Context,
    version: str | None = typer.Option(None, "--version", help="version to shadow (default: the challenger)"),
    off: bool = typer.Option(False, "--off", help="stop the shadow"),
    actor: str | None = _ACTOR,
    reason: str = typer.Option("", "--reason", help="why"),
    force: bool = typer.Option(False, "--force", help="shadow a version that failed the validation gate"),
) -> None:
    """Score every transaction with a version beside the champion: recorded, never acted on."""
    from cardscore.core import release

    settings = settings_of(ctx)
    if off:
        _print_event(_run(release.stop_shadow, settings=settings, actor=actor, reason=reason))
    else:
        _print_event(_run(release.start_shadow, settings=settings, version=version, actor=actor,
                          reason=reason, force=force))


@release_app.command("canary")
def canary_cmd(
    ctx: typer.Context,
    share: float = typer.Option(..., "--share", help="percent of cards (0 < share <= 100) the canary serves"),
    version: str | None = typer.Option(
        None, "--version", help="version (default: the current canary, else the shadow, else the challenger)"),
    actor: str | None = _ACTOR,
    reason: str = typer.Option("", "--reason", help="why"),
    force: bool = typer.Option(False, "--force", help="canary a version that failed the validation gate"),
) -> None:
    """Serve a share of the cards (sticky by card id) with a version; ramp 5 -> 25 -> 100."""
    from cardscore.core import release

    _print_event(_run(release.set_canary, settings=settings_of(ctx), share=share, version=version,
                      actor=actor, reason=reason, force=force))


@release_app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    version: str | None = typer.Option(None, "--version", help="version (default: the canary, else the shadow)"),
    actor: str | None = _ACTOR,
    reason: str = typer.Option(..., "--reason", help="why (recorded on the model version)"),
    force: bool = typer.Option(False, "--force", help="promote a version that failed the validation gate"),
) -> None:
    """Make the canary the champion (the old one becomes previous-champion: `cardscore rollback`)."""
    from cardscore.core import release

    moved, event = _run(release.promote, settings=settings_of(ctx), version=version, actor=actor,
                        reason=reason, force=force)
    typer.echo(f"{moved.model_name} champion is now v{moved.version}"
               + (f" (was v{moved.previous_version})" if moved.previous_version else ""))
    _print_event(event)


@release_app.command("abort")
def abort_cmd(
    ctx: typer.Context,
    actor: str | None = _ACTOR,
    reason: str = typer.Option(..., "--reason", help="why (recorded on the registry)"),
) -> None:
    """Take the canary back to 0% of cards (the champion serves them all again)."""
    from cardscore.core import release

    _print_event(_run(release.abort, settings=settings_of(ctx), actor=actor, reason=reason))


@release_app.command("freeze")
def freeze_cmd(
    ctx: typer.Context,
    actor: str | None = _ACTOR,
    reason: str = typer.Option(..., "--reason", help="why (recorded on the registry)"),
) -> None:
    """Kill switch: every scorer serves the rule-based fallback (scores flagged `fallback`)."""
    from cardscore.core import release

    _print_event(_run(release.freeze, settings=settings_of(ctx), actor=actor, reason=reason))


@release_app.command("unfreeze")
def unfreeze_cmd(
    ctx: typer.Context,
    actor: str | None = _ACTOR,
    reason: str = typer.Option(..., "--reason", help="why (recorded on the registry)"),
) -> None:
    """Restore the models (champion, canary, shadow as they were before the freeze)."""
    from cardscore.core import release

    _print_event(_run(release.unfreeze, settings=settings_of(ctx), actor=actor, reason=reason))


@release_app.command("history")
def history_cmd(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, help="how many transitions, newest first"),
) -> None:
    """The release transitions recorded on the registry: who, why, when."""
    from cardscore.core import release

    for event in _run(release.history, settings=settings_of(ctx), limit=limit):
        version = f" v{event['version']}" if event.get("version") else ""
        typer.echo(f"{event['at']} {event['action']}{version} by {event['by']}: {event['reason']}")
