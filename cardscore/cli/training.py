"""`cardscore promote`, `cardscore rollback`, `cardscore models list|show`. (`cardscore train`
goes through the runner: cardscore/cli/stages.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer
from rich.table import Table

from cardscore.cli.app import (
    EXIT_FAILED,
    app,
    console,
    settings_of,
)

models_app = typer.Typer(help="Registered model versions and their aliases.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _transition(fn: Callable[..., Any], **kwargs: Any) -> None:
    from cardscore.core.errors import StageFailed

    try:
        moved = fn(**kwargs)
    except StageFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    before = f" (was v{moved.previous_version})" if moved.previous_version else ""
    console.print(
        f"{moved.action}: {moved.model_name} champion is now v{moved.version}{before}; "
        f"by {moved.actor} at {moved.at}; reason: {moved.reason}"
    )


@app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    version: str | None = typer.Option(None, "--version", help="version to promote (default: the challenger)"),
    actor: str | None = typer.Option(None, "--actor", help="who promotes (default $USER)"),
    reason: str = typer.Option(..., "--reason", help="why (recorded on the model version)"),
    force: bool = typer.Option(False, "--force", help="promote a version that failed the gate"),
) -> None:
    """Move the `champion` alias to the challenger; the old champion becomes `previous-champion`."""
    from cardscore.core import registry

    settings = settings_of(ctx)
    _transition(registry.promote, settings=settings, actor=actor, reason=reason, version=version, force=force)
    _warn_if_not_streamed(settings, registry.resolve_alias(settings, registry.CHAMPION))


def _warn_if_not_streamed(settings: Any, ref: Any) -> None:
    """Say so when the new champion reads a feature set the online scorers do not serve."""
    from cardscore.features.feature_sets import SNAPSHOT_V1, feature_set_of

    found = feature_set_of(ref.feature_names)
    if found is not None and found != SNAPSHOT_V1:
        console.print(
            f"[yellow]warning: v{ref.version} reads feature set {found.name}; the batch scorer serves it, and "
            "the stream scorer and the scoring API with their `fresh_features` setting on (beside `cardscore "
            "fresh-stream`); without it they serve snapshot_v1 only: while it is the champion they serve the "
            "flagged fallback rules (`cardscore rollback` restores the previous champion)[/yellow]"
        )


@app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    actor: str | None = typer.Option(None, "--actor", help="who rolls back (default $USER)"),
    reason: str = typer.Option(..., "--reason", help="why (recorded on the model versions)"),
) -> None:
    """Restore the `previous-champion` version as `champion`."""
    from cardscore.core import registry

    _transition(registry.rollback, settings=settings_of(ctx), actor=actor, reason=reason)


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """Every version, newest first: aliases, gate result, test metrics."""
    from cardscore.core import registry

    settings = settings_of(ctx)
    versions = registry.list_versions(settings)
    if not versions:
        console.print(f"no versions of {settings.mlflow.model_name} in {settings.mlflow_registry_uri}")
        return
    table = Table(title=settings.mlflow.model_name)
    table.add_column("version", justify="right")
    table.add_column("aliases", no_wrap=True)
    for col in ("gate", "AUC", "AP", "CP@k", "created", "run"):
        table.add_column(col)
    for v in versions:
        m = v.metrics
        table.add_row(
            v.version, ", ".join(v.aliases), v.gate or "-",
            *(f"{m[key]:.3f}" if key in m else "-" for key in
              ("test_auc_roc", "test_average_precision", "test_card_precision_at_k")),
            v.created[:16], (v.run_id or "")[:8],
        )
    console.print(table)


@models_app.command("env")
def models_env(ctx: typer.Context) -> None:
    """Print shell exports that point MLflow's own CLI at these settings' registry.

    eval "$(cardscore models env)"; mlflow models serve -m "models:/$CARDSCORE_MODEL_NAME@champion" --env-manager local

    --env-manager local serves with this venv's packages; the other managers build one from the internet.

    mlflow starts its server from PATH: put the venv's bin on it (. .venv/bin/activate, as make does).
    """
    import shlex

    from cardscore.core.config.secrets import has_literal_password

    settings = settings_of(ctx)
    values = {
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.mlflow_registry_uri,
        "CARDSCORE_MODEL_NAME": settings.mlflow.model_name,
    }
    for name, value in values.items():
        if has_literal_password(value):  # never print a secret: the user sets this one
            print(f"# set {name} yourself: the URI holds a password")
        else:
            print(f"export {name}={shlex.quote(value)}")


@models_app.command("show")
def models_show(
    ctx: typer.Context,
    version: str | None = typer.Argument(None, help="version number (default: --alias)"),
    alias: str = typer.Option("champion", "--alias", help="alias to show when no version is given"),
) -> None:
    """One version as JSON: aliases, run, features, gate, transitions (who, why, when)."""
    from cardscore.core import registry
    from cardscore.core.errors import StageFailed

    settings = settings_of(ctx)
    try:
        ref = registry.get_version(settings, version) if version else registry.resolve_alias(settings, alias)
    except StageFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    info = next((v for v in registry.list_versions(settings) if v.version == ref.version), None)
    transitions = sorted(
        (json.loads(val) for key, val in ref.tags.items() if key.startswith("transition.")),
        key=lambda e: e.get("at", ""),
    )
    print(json.dumps({
        "name": ref.name,
        "version": ref.version,
        "aliases": list(info.aliases) if info else [],
        "model_uri": ref.model_uri,
        "run_id": ref.run_id,
        "feature_service": ref.feature_service,
        "feature_names": list(ref.feature_names),
        "gate": ref.tags.get(registry.TAG_GATE),
        "metrics": info.metrics if info else {},
        "transitions": transitions,
    }, indent=2))
