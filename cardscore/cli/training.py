"""`cardscore train`, `cardscore promote`, `cardscore rollback`, `cardscore models list|show`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer
from rich.table import Table

from cardscore.cli.app import (
    EXIT_FAILED,
    EXIT_USAGE,
    app,
    console,
    parse_day,
    phase_bars,
    settings_of,
)

models_app = typer.Typer(help="Registered model versions and their aliases.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _metrics_table(report: Any) -> Table:
    from cardscore.model.card import HANDBOOK_TEST_RESULTS

    k = report.test.k
    table = Table(title=f"{report.model_name} v{report.version or '-'} (run {report.run_id[:8]})")
    table.add_column("metric")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    table.add_column("handbook XGBoost", justify="right")
    table.add_column("best handbook", justify="right")
    names = {"auc_roc": "AUC ROC", "average_precision": "average precision",
             "card_precision_at_k": f"card precision@{k}"}
    for metric, label in names.items():
        best = max(row[metric] for row in HANDBOOK_TEST_RESULTS.values())
        table.add_row(label, f"{report.train.metrics()[metric]:.3f}", f"[bold]{report.test.metrics()[metric]:.3f}[/bold]",
                      f"{HANDBOOK_TEST_RESULTS['XGBoost'][metric]:.3f}", f"{best:.3f}")
    return table


def _gate_lines(decision: Any) -> None:
    for check in decision.checks:
        mark = "[green]ok[/green]  " if check.passed else "[red]FAIL[/red]"
        console.print(f"  {mark} {check.detail}")


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    train_start: str | None = typer.Option(
        None, "--train-start", help="first training day, YYYY-MM-DD (default: training.protocol.train_start)"
    ),
    search: bool | None = typer.Option(
        None, "--search/--no-search", help="prequential hyperparameter search first (default: training.search.enabled)"
    ),
    select_by: str | None = typer.Option(
        None, "--select-by", help="validation metric the search maximises: auc_roc, average_precision, card_precision_at_k"
    ),
    register: bool = typer.Option(True, "--register/--no-register", help="register a version and run the gate"),
    actor: str | None = typer.Option(None, "--actor", help="who trains (recorded on alias moves; default $USER)"),
    reason: str = typer.Option("", "--reason", help="why (recorded on alias moves)"),
    remote: str | None = typer.Option(None, "--remote", help="Spark Connect URL sc://host:port"),
    as_json: bool = typer.Option(False, "--json", help="print the training report as JSON on stdout"),
) -> None:
    """Train, evaluate, log to MLflow and register the fraud model; run the validation gate.

    Builds point-in-time training and test sets from the feature store with the handbook's
    protocol (train 7 days, 7-day delay, test 7 days, known-compromised cards removed), fits
    XGBoost, logs params, metrics, plots, lineage, the model and its card, registers a
    version and, if it passes the gate, points the `challenger` alias at it.
    Exit code 1 when the gate rejects the model (no alias moves) or an input is missing.
    """
    from cardscore.core.engine import EngineError, get_spark, stop_spark
    from cardscore.core.errors import StageFailed
    from cardscore.core.lake import Lake
    from cardscore.core.stage import JobContext
    from cardscore.jobs.train import GateRejected, TrainingParams, train

    if select_by not in (None, "auc_roc", "average_precision", "card_precision_at_k"):
        raise typer.BadParameter(f"unknown metric {select_by!r}", param_hint="--select-by")
    settings = settings_of(ctx)
    try:
        spark = get_spark(settings, remote=remote)
    except EngineError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    report = None
    try:
        with phase_bars() as progress:
            params = TrainingParams(
                train_start=parse_day(train_start) if train_start else None,
                search=search, select_by=select_by, register=register, actor=actor, reason=reason,
                progress=progress,
            )
            report = train(JobContext(settings, spark, Lake(spark, settings)), params)
    except GateRejected as exc:
        report = exc.report
        console.print(_metrics_table(report))
        console.print(f"[red]{report.model_name} v{report.version}: rejected by the validation gate[/red]")
        _gate_lines(report.gate)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2, default=str))
        raise typer.Exit(EXIT_FAILED) from None
    except StageFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        stop_spark()
    console.print(_metrics_table(report))
    if report.gate is not None:
        console.print(f"[green]{report.model_name} v{report.version}: passed the gate, alias challenger[/green]")
        _gate_lines(report.gate)
        console.print("promote it with: cardscore promote --reason '...'")
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))


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

    _transition(registry.promote, settings=settings_of(ctx), actor=actor, reason=reason,
                version=version, force=force)


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
